"""The per-query QIDO-RS facade answers what OHIF v3 sends, against the real server (SQLite and PostgreSQL):
the worklist's and the series list's attributes, includefield, every matching key the worklist and
the viewer's "other studies of this patient" use, paging, and the query's rank order through all of it.

The query strings below are built as OHIF's DICOMweb data source builds them (its `mapParams`:
`limit=101`, `offset=0`, `fuzzymatching=false`, `includefield` as one comma-separated list, a key
wrapped in `*...*` when the data source says it supports wildcards, `00100020` for the patient ID,
a `\\`-list of study UIDs) and as dicomweb-client's JS sends a list: `encodeURIComponent` of an array,
commas between the values.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from dicomweb_client.api import DICOMwebClient

from tests.api.conftest import Served, contour_png

OHIF_STUDY_FIELDS = "00081030,00080060,00080090,00100030"  # what its worklist asks beyond the defaults
OHIF_SERIES_FIELDS = "0008103E,00080021"  # what its series list asks
RANK, SCORE, CREATOR = "00111001", "00111002", "00110010"


def _value(dataset: dict[str, Any], tag: str) -> Any:
    values = dataset.get(tag, {}).get("Value")
    return values[0] if values else None


@pytest.fixture(scope="module")
def ranked(served: Served) -> dict[str, Any]:
    """A search over the whole phantom archive (16 hits, 6 patients, one study each); its hits in rank order."""
    with served.client() as client:
        found = client.post("/v1/search", files={"sketch": ("s.png", contour_png(served.dataset, "000007"))}, data={"k": "16"})
    assert found.status_code == 200, found.text
    return found.json()


def _studies(served: Served, query_id: str, query: str = "", key: str = "search") -> list[dict[str, Any]]:
    with served.client(key) as client:
        answer = client.get(f"/dicomweb/results/{query_id}/studies" + (f"?{query}" if query else ""))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/dicom+json"
    return answer.json()


def _ohif(**keys: str) -> str:
    """A worklist query string as OHIF builds it: its fixed parameters, then the user's filters."""
    fixed = {"limit": "101", "offset": "0", "fuzzymatching": "false", "includefield": OHIF_STUDY_FIELDS}
    return "&".join(f"{name}={quote(value, safe='')}" for name, value in {**keys, **fixed}.items())


def _ranks(studies: list[dict[str, Any]]) -> list[int]:
    return [_value(study, RANK) for study in studies]


def test_the_worklist_query_lists_every_hit_in_rank_order_with_the_columns_ohif_shows(served: Served, ranked: dict[str, Any]) -> None:
    hits = ranked["results"]
    studies = _studies(served, ranked["query_id"], _ohif())
    assert [_value(s, "0020000D") for s in studies] == [hit["study_uid"] for hit in hits]
    assert _ranks(studies) == list(range(1, len(hits) + 1))
    for study, hit in zip(studies, hits):
        assert _value(study, SCORE) == pytest.approx(hit["score"], abs=1e-6) and _value(study, CREATOR) == "SKETCH2MEDI"
        assert _value(study, "00081030") == f"Match {hit['rank']:02d} of {len(hits)}"  # sorts as text in rank order
        assert _value(study, "00080020") == hit["study_date"].replace("-", "")
        assert _value(study, "00080050") == hit["case_id"]
        assert _value(study, "00100020") == hit["patient_pseudonym"]  # the pseudonym, never the archive's identifier
        assert _value(study, "00080061") == "XC"
        assert _value(study, "00201206") == 1 and _value(study, "00201208") == 1
        # present and empty where the archive holds nothing (no names, birth dates; the phantoms' dates have no time)
        for empty in ("00100010", "00100030", "00080090", "00080030"):
            assert study[empty] == {"vr": study[empty]["vr"]}, empty
    assert sorted(_value(s, "00081030") for s in studies) == [_value(s, "00081030") for s in studies]


def test_includefield_adds_attributes_beyond_the_defaults_listed_repeated_or_all(served: Served, ranked: dict[str, Any]) -> None:
    query_id = ranked["query_id"]
    plain = _studies(served, query_id)[0]
    assert "00081030" not in plain and {"0020000D", "00100020", "00080050", "00080020", RANK, SCORE} <= set(plain)
    assert "00081030" in _studies(served, query_id, "includefield=StudyDescription&includefield=PatientBirthDate")[0]
    assert "00081030" in _studies(served, query_id, "includefield=all")[0]
    assert "00081030" in _studies(served, query_id, "StudyDescription=*")[0]  # a matching key is returned too
    assert "00080021" not in _studies(served, query_id, "includefield=all")[0]  # a series attribute is not the study's


def test_filtering_by_rank_ones_accession_number_returns_rank_one(served: Served, ranked: dict[str, Any]) -> None:
    query_id, top = ranked["query_id"], ranked["results"][0]
    for accession in (top["case_id"], f"*{top['case_id'][-4:]}*", "?" + top["case_id"][1:]):
        studies = _studies(served, query_id, _ohif(AccessionNumber=accession))
        assert _ranks(studies) == [1], accession
        assert _value(studies[0], "0020000D") == top["study_uid"]
    assert _studies(served, query_id, _ohif(AccessionNumber=top["case_id"].lower())) == []  # exact unless fuzzy
    fuzzy = _ohif(AccessionNumber=top["case_id"].lower()).replace("fuzzymatching=false", "fuzzymatching=true")
    assert _ranks(_studies(served, query_id, fuzzy)) == [1]


def test_other_studies_of_this_patient_are_found_by_the_pseudonym_the_facade_returned(served: Served, ranked: dict[str, Any]) -> None:
    """OHIF's study browser: the study by its UID, then `00100020=<its mrn>` with wildcards off."""
    query_id, hits = ranked["query_id"], ranked["results"]
    third = hits[2]
    current = _studies(served, query_id, _ohif(StudyInstanceUID=third["study_uid"]))
    assert _ranks(current) == [3]
    mrn = _value(current[0], "00100020")
    same_patient = [hit["rank"] for hit in hits if hit["patient_pseudonym"] == mrn]
    assert 3 in same_patient and 1 < len(same_patient) < len(hits)
    assert _ranks(_studies(served, query_id, "00100020=" + mrn + "&" + _ohif())) == same_patient
    assert _ranks(_studies(served, query_id, _ohif(PatientID=f"*{mrn[2:-2]}*"))) == same_patient  # with wildcards
    assert _studies(served, query_id, _ohif(PatientID=mrn[:-1])) == []


def test_dates_lists_names_and_descriptions_match_as_dicom_says_and_keep_the_rank_order(served: Served, ranked: dict[str, Any]) -> None:
    query_id, hits = ranked["query_id"], ranked["results"]
    dates = {hit["rank"]: hit["study_date"].replace("-", "") for hit in hits}
    middle = sorted(dates.values())[len(hits) // 2]
    for value, keep in ((f"{middle}-", lambda d: d >= middle), (f"-{middle}", lambda d: d <= middle),
                        (f"{middle}-{middle}", lambda d: d == middle), (middle, lambda d: d == middle),
                        (f"{min(dates.values())}-{middle}", lambda d: d <= middle)):
        assert _ranks(_studies(served, query_id, _ohif(StudyDate=value))) == [r for r, d in dates.items() if keep(d)], value
    everything = list(range(1, len(hits) + 1))
    assert _ranks(_studies(served, query_id, _ohif(ModalitiesInStudy="XC"))) == everything
    assert _ranks(_studies(served, query_id, _ohif(ModalitiesInStudy="CT,XC"))) == everything  # a JS array
    assert _ranks(_studies(served, query_id, _ohif(ModalitiesInStudy="CT\\XC"))) == everything
    assert _studies(served, query_id, _ohif(ModalitiesInStudy="CT")) == []
    picked = _ohif(StudyInstanceUID=f"{hits[4]['study_uid']}\\{hits[1]['study_uid']}")  # as OHIF joins them
    assert _ranks(_studies(served, query_id, picked)) == [2, 5]  # the query's order, not the list's
    assert _ranks(_studies(served, query_id, _ohif(PatientName="*"))) == everything
    assert _studies(served, query_id, _ohif(PatientName="*doe*")) == []  # the archive holds no names
    assert _ranks(_studies(served, query_id, _ohif(StudyDescription="*Match 02*"))) == [2]
    ignored = _ohif(PatientBirthDate="19000101", InstitutionName="X", Foo="bar")  # keys the facade does not match on
    assert _ranks(_studies(served, query_id, ignored)) == everything


def test_paging_a_filtered_list_keeps_its_order(served: Served, ranked: dict[str, Any]) -> None:
    query_id, hits = ranked["query_id"], ranked["results"]
    mrn = hits[0]["patient_pseudonym"]
    same_patient = [hit["rank"] for hit in hits if hit["patient_pseudonym"] == mrn]
    paged = f"PatientID={mrn}&limit=1&offset=1"
    assert _ranks(_studies(served, query_id, paged)) == same_patient[1:2]
    assert _ranks(_studies(served, query_id, "limit=5&offset=5")) == [6, 7, 8, 9, 10]
    assert _studies(served, query_id, "offset=100") == []


def test_the_series_and_instance_lists_carry_what_ohif_shows(served: Served, ranked: dict[str, Any]) -> None:
    query_id, top = ranked["query_id"], ranked["results"][0]
    viewer = DICOMwebClient(url=f"{served.url}/dicomweb/results/{query_id}", headers={"Authorization": f"Bearer {served.search_key}"})
    series = viewer.search_for_series(study_instance_uid=top["study_uid"], fields=OHIF_SERIES_FIELDS.split(","))
    assert len(series) == 1
    listed = series[0]
    assert _value(listed, "0020000E") == top["series_uid"] and _value(listed, "0020000D") == top["study_uid"]
    assert _value(listed, "00080060") == "XC" and _value(listed, "00201209") == 1
    assert _value(listed, "0008103E") == f"Match 01 of {len(ranked['results'])}"
    assert _value(listed, "00080021") == top["study_date"].replace("-", "")
    assert listed["00200011"] == {"vr": "IS"} and _value(listed, RANK) == 1  # no series number in the archive
    assert viewer.search_for_series(study_instance_uid=top["study_uid"], search_filters={"Modality": "CT"}) == []
    instances = viewer.search_for_instances(study_instance_uid=top["study_uid"], series_instance_uid=top["series_uid"])
    assert [_value(i, "00080018") for i in instances] == [top["sop_uid"]]
    assert _value(instances[0], "00081190") == top["wado_url"] and _value(instances[0], "00280010") == top["height"]
    assert viewer.search_for_series(study_instance_uid="1.2.3.4") == []


def test_a_malformed_date_is_one_sentence_without_the_value(served: Served, ranked: dict[str, Any]) -> None:
    with served.client() as client:
        for value in ("2024-01-01", "20240101-2025", "yesterday"):
            answer = client.get(f"/dicomweb/results/{ranked['query_id']}/studies", params={"StudyDate": value})
            assert answer.status_code == 422, value
            assert answer.json() == {"error": "the QIDO key StudyDate must be a date YYYYMMDD or an inclusive range "
                                              "YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD"}
