"""One query's ranked hits as the facade's studies, series and instances, and those as DICOM JSON (PS3.18 F.2).

Items keep the query's rank order: a study or series comes where its best hit ranks, its instances
in rank order. What an item says comes from its best hit's archive record, empty where the archive
holds nothing (names, birth dates, series numbers: the archive never stores them). PatientID is
the archive's keyed pseudonym, never an identifier; AccessionNumber is the case's reference;
counts are of the query's hits, not of the whole study in the PACS; the descriptions say the rank
in words ("Match 03 of 10", zero-padded so that a text sort keeps rank order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from api.qido.attributes import PRIVATE_CREATOR, PRIVATE_CREATOR_TAG, RANK, SCORE, Attribute
from api.qido.matching import Values
from retrieval.results import Hit

VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"
MODALITY = "XC"
NUMBERS = ("IS", "US", "DS")


def match_text(rank: int, total: int) -> str:
    return f"Match {rank:0{len(str(total))}d} of {total}"


def _one(value: Any) -> tuple[Any, ...]:
    return () if value in (None, "") else (value,)


def _when(hit: Hit) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The (DA, TM) values of a hit's acquisition; a time of exactly midnight is a date that came without
    one (a metadata CSV's study_date), so no time."""
    when = hit.case.acquired_at
    if when is None:
        return (), ()
    midnight = (when.hour, when.minute, when.second, when.microsecond) == (0, 0, 0, 0)
    return (when.strftime("%Y%m%d"),), (() if midnight else (when.strftime("%H%M%S"),))


def _grouped(hits: Sequence[Hit], uid: Callable[[Hit], str | None]) -> list[list[Hit]]:
    """Hits grouped by `uid`, the groups in the order of their best hit (so in rank order)."""
    groups: dict[str | None, list[Hit]] = {}
    for hit in hits:
        groups.setdefault(uid(hit), []).append(hit)
    return list(groups.values())


def _ranked(best: Hit) -> dict[str, tuple[Any, ...]]:
    return {RANK: (best.rank,), SCORE: (round(best.score, 6),)}


def _study(group: Sequence[Hit], total: int) -> dict[str, tuple[Any, ...]]:
    best = group[0]
    date, time = _when(best)
    return {
        "StudyDate": date, "StudyTime": time,
        "AccessionNumber": _one(best.case.case_ref), "ModalitiesInStudy": (MODALITY,), "ReferringPhysicianName": (),
        "StudyDescription": (match_text(best.rank, total),), "PatientName": (), "PatientID": _one(best.case.patient_ref),
        "PatientBirthDate": (), "PatientSex": (), "StudyInstanceUID": _one(best.case.study_uid), "StudyID": (),
        "NumberOfStudyRelatedSeries": (len({hit.case.series_uid for hit in group}),),
        "NumberOfStudyRelatedInstances": (len(group),), **_ranked(best),
    }


def _series(study: Values, group: Sequence[Hit], total: int) -> dict[str, tuple[Any, ...]]:
    best = group[0]
    date, time = _when(best)
    return {
        **study, "SeriesDate": date, "SeriesTime": time,
        "Modality": (MODALITY,), "SeriesDescription": (match_text(best.rank, total),),
        "SeriesInstanceUID": _one(best.case.series_uid), "SeriesNumber": (),
        "NumberOfSeriesRelatedInstances": (len(group),), **_ranked(best),
    }


def _instance(series: Values, hit: Hit, retrieve_url: str | None) -> dict[str, tuple[Any, ...]]:
    return {
        **series, "SOPClassUID": (VL_PHOTOGRAPHIC,), "SOPInstanceUID": _one(hit.case.sop_uid), "RetrieveURL": _one(retrieve_url),
        "InstanceNumber": (), "Rows": (hit.height,), "Columns": (hit.width,), **_ranked(hit),
    }


def studies(hits: Sequence[Hit], total: int) -> list[Values]:
    """The studies of `hits` (the query's live hits that have UIDs, in rank order); `total` ranks in all."""
    return [_study(group, total) for group in _grouped(hits, lambda hit: hit.case.study_uid)]


def series(hits: Sequence[Hit], total: int, study_uid: str) -> list[Values]:
    """The series of study `study_uid` among `hits` (none for a study that holds none of them)."""
    group = [hit for hit in hits if hit.case.study_uid == study_uid]
    if not group:
        return []
    study = _study(group, total)
    return [_series(study, part, total) for part in _grouped(group, lambda hit: hit.case.series_uid)]


def instances(hits: Sequence[Hit], total: int, study_uid: str, series_uid: str,
              retrieve_url: Callable[[Hit], str | None]) -> list[Values]:
    """The instances of one series among `hits`, each with its WADO-RS RetrieveURL where one is configured."""
    chosen = [item for item in series(hits, total, study_uid) if item["SeriesInstanceUID"] == (series_uid,)]
    if not chosen:
        return []
    group = [hit for hit in hits if hit.case.study_uid == study_uid and hit.case.series_uid == series_uid]
    return [_instance(chosen[0], hit, retrieve_url(hit)) for hit in group]


def _element(attribute: Attribute, values: tuple[Any, ...]) -> dict[str, Any]:
    if not values:
        return {"vr": attribute.vr}
    if attribute.vr == "PN":
        return {"vr": "PN", "Value": [{"Alphabetic": str(value)} for value in values]}
    return {"vr": attribute.vr, "Value": [value if attribute.vr in NUMBERS else str(value) for value in values]}


def dicom_json(values: Values, attributes: Sequence[Attribute]) -> dict[str, Any]:
    """The item's `attributes` as a DICOM JSON dataset (empty ones as `{"vr": ...}`), the private creator with them."""
    dataset = {attribute.tag: _element(attribute, values.get(attribute.keyword, ())) for attribute in attributes}
    if any(attribute.private for attribute in attributes):
        dataset[PRIVATE_CREATOR_TAG] = {"vr": "LO", "Value": [PRIVATE_CREATOR]}
    return dict(sorted(dataset.items()))

