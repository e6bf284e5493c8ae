"""The QIDO matching rules (PS3.4 C.2.2.2) on their own: what a key's value matches, and what a level returns."""

from __future__ import annotations

import pytest

from api.qido.attributes import SERIES, STUDY
from api.qido.matching import parse
from formats.errors import InputError

STUDY_VALUES = {"PatientName": (), "PatientID": ("ab12cd",), "AccessionNumber": ("PH21-000007",), "StudyDate": ("20240401",),
                "ModalitiesInStudy": ("XC",), "StudyInstanceUID": ("1.2.3",), "StudyDescription": ("Match 01 of 16",)}


def _matches(*params: tuple[str, str]) -> bool:
    return parse(list(params)).matches(STUDY_VALUES, STUDY)


@pytest.mark.parametrize("params, expected", [
    ((("PatientName", ""),), True), ((("PatientName", "*"),), True), ((("PatientName", "a*"),), False),  # no name
    ((("AccessionNumber", "PH21-000007"),), True), ((("accessionnumber", "PH21-0000??"),), True),
    ((("AccessionNumber", "PH21-00000"),), False), ((("AccessionNumber", "ph21-000007"),), False),
    ((("AccessionNumber", "ph21-000007"), ("fuzzymatching", "true")), True),
    ((("AccessionNumber", "x\\*000007"),), True),  # a \-list: any of its values
    ((("AccessionNumber", "PH21.000007"),), False),  # a dot is no wildcard
    ((("00100020", "AB12CD"),), False), ((("00100020", "ab12cd"),), True), ((("00100020", "*12*"),), True),
    ((("StudyDate", "20240401"),), True), ((("StudyDate", "20240101-20241231"),), True),
    ((("StudyDate", "20240402-"),), False), ((("StudyDate", "-20240401"),), True), ((("StudyDate", "20240401-20240401"),), True),
    ((("StudyInstanceUID", "9.9,1.2.3"),), True), ((("0020000d", "9.9\\1.2"),), False),
    ((("ModalitiesInStudy", "CT,XC"),), True), ((("ModalitiesInStudy", "CT"),), False),
    ((("StudyDescription", "match 01*"),), False), ((("StudyDescription", "Match 01*"),), True),
    ((("PatientBirthDate", "19000101"), ("Foo", "bar"), ("limit", "2")), True),  # ignored keys
    ((("PatientID", "ab12cd"), ("AccessionNumber", "other")), False),  # every key must match
    ((("SeriesInstanceUID", "9.9"), ("Modality", "CT")), True),  # a series key does not filter studies
])
def test_a_key_matches_as_dicom_says(params: tuple[tuple[str, str], ...], expected: bool) -> None:
    assert _matches(*params) is expected


@pytest.mark.parametrize("value", ["2024-04-01", "20240101-2025", "-", "yesterday", "20240101-20241231-20250101"])
def test_a_malformed_date_is_refused_naming_the_key_only(value: str) -> None:
    with pytest.raises(InputError) as refused:
        parse([("StudyDate", value)])
    assert str(refused.value) == ("the QIDO key StudyDate must be a date YYYYMMDD or an inclusive range "
                                  "YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD")  # the key, never the value


def test_a_level_returns_its_defaults_what_includefield_names_and_the_matching_keys() -> None:
    def returned(*params: tuple[str, str], level: str = STUDY) -> list[str]:
        return [attribute.keyword for attribute in parse(list(params)).returned(level)]

    plain = returned()
    assert "StudyDescription" not in plain and {"PatientID", "AccessionNumber", "Sketch2MedIRank", "Sketch2MedIScore"} <= set(plain)
    assert "StudyDescription" in returned(("includefield", "00081030,00100030"))
    assert "StudyDescription" in returned(("includefield", "PatientSex"), ("includefield", "studydescription"))
    assert "StudyDescription" in returned(("StudyDescription", "*"))
    assert returned(("includefield", "NoSuchKeyword,12345678")) == plain
    assert "SeriesDate" not in returned(("includefield", "all")) and "SeriesDate" in returned(("includefield", "all"), level=SERIES)
    series = returned(level=SERIES)
    assert {"StudyInstanceUID", "SeriesInstanceUID", "SeriesDescription", "SeriesNumber", "Modality"} <= set(series)
    assert "PatientID" not in series and "StudyDate" in returned(("includefield", "StudyDate"), level=SERIES)
    tags = [attribute.tag for attribute in parse([("includefield", "all")]).returned(STUDY)]
    assert tags == sorted(tags)
