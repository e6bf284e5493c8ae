"""The attributes the per-query QIDO-RS facade knows, with their tags, VRs, levels and roles.

One table, read by the matching (which keys filter) and by the datasets (what is returned and
how). `default` marks what a level returns without `includefield` (PS3.18's default return
attributes that the archive can fill, plus the facade's rank); `matching` marks the keys a viewer
filters by. Rank and score are private attributes of the creator `SKETCH2MEDI` (group 0011), so
a client that knows them can sort by the query's rank; StudyDescription carries the rank in words
for a worklist that only sorts by its own columns (docs/qido.md).
"""

from __future__ import annotations

from dataclasses import dataclass

STUDY, SERIES, INSTANCE = "study", "series", "instance"
LEVELS = (STUDY, SERIES, INSTANCE)
PRIVATE_CREATOR_TAG = "00110010"
PRIVATE_CREATOR = "SKETCH2MEDI"
RANK, SCORE = "Sketch2MedIRank", "Sketch2MedIScore"


@dataclass(frozen=True)
class Attribute:
    keyword: str
    tag: str  # 8 upper-case hex digits, as DICOM JSON names it
    vr: str
    level: str  # the level whose items own it; lower levels carry their parents' values too
    default: bool = False  # returned at its own level without includefield
    matching: bool = False  # a key a viewer may filter by

    @property
    def private(self) -> bool:
        return int(self.tag[:4], 16) % 2 == 1


ATTRIBUTES = (
    Attribute("StudyDate", "00080020", "DA", STUDY, default=True, matching=True),
    Attribute("StudyTime", "00080030", "TM", STUDY, default=True),
    Attribute("AccessionNumber", "00080050", "SH", STUDY, default=True, matching=True),
    Attribute("ModalitiesInStudy", "00080061", "CS", STUDY, default=True, matching=True),
    Attribute("ReferringPhysicianName", "00080090", "PN", STUDY, default=True),
    Attribute("StudyDescription", "00081030", "LO", STUDY, matching=True),
    Attribute("PatientName", "00100010", "PN", STUDY, default=True, matching=True),
    Attribute("PatientID", "00100020", "LO", STUDY, default=True, matching=True),
    Attribute("PatientBirthDate", "00100030", "DA", STUDY, default=True),
    Attribute("PatientSex", "00100040", "CS", STUDY, default=True),
    Attribute("StudyInstanceUID", "0020000D", "UI", STUDY, default=True, matching=True),
    Attribute("StudyID", "00200010", "SH", STUDY, default=True),
    Attribute("NumberOfStudyRelatedSeries", "00201206", "IS", STUDY, default=True),
    Attribute("NumberOfStudyRelatedInstances", "00201208", "IS", STUDY, default=True),
    Attribute("SeriesDate", "00080021", "DA", SERIES, matching=True),
    Attribute("SeriesTime", "00080031", "TM", SERIES),
    Attribute("Modality", "00080060", "CS", SERIES, default=True, matching=True),
    Attribute("SeriesDescription", "0008103E", "LO", SERIES, default=True, matching=True),
    Attribute("SeriesInstanceUID", "0020000E", "UI", SERIES, default=True, matching=True),
    Attribute("SeriesNumber", "00200011", "IS", SERIES, default=True),
    Attribute("NumberOfSeriesRelatedInstances", "00201209", "IS", SERIES, default=True),
    Attribute("SOPClassUID", "00080016", "UI", INSTANCE, default=True, matching=True),
    Attribute("SOPInstanceUID", "00080018", "UI", INSTANCE, default=True, matching=True),
    Attribute("RetrieveURL", "00081190", "UR", INSTANCE, default=True),
    Attribute("InstanceNumber", "00200013", "IS", INSTANCE, default=True),
    Attribute("Rows", "00280010", "US", INSTANCE, default=True),
    Attribute("Columns", "00280011", "US", INSTANCE, default=True),
    # the query's rank and fused score of the item's best match: every level, always returned
    Attribute(RANK, "00111001", "IS", STUDY, default=True),
    Attribute(SCORE, "00111002", "DS", STUDY, default=True),
)
BY_NAME = {**{a.keyword.lower(): a for a in ATTRIBUTES}, **{a.tag.lower(): a for a in ATTRIBUTES}}
# a lower level returns these of its parents by default too (the UIDs a client files the item under)
PARENT_DEFAULTS = {SERIES: ("StudyInstanceUID",), INSTANCE: ("StudyInstanceUID", "SeriesInstanceUID")}


def named(name: str) -> Attribute | None:
    """The attribute of a keyword or an 8-digit tag (any case), None for one the facade does not know."""
    return BY_NAME.get(name.strip().lower())


def carried_by(level: str) -> tuple[Attribute, ...]:
    """The attributes an item of `level` has: its own and its parent levels'."""
    depth = LEVELS.index(level)
    return tuple(a for a in ATTRIBUTES if LEVELS.index(a.level) <= depth)


def defaults(level: str) -> tuple[Attribute, ...]:
    """What `level` returns without includefield: its own defaults, its parents' UIDs, rank and score."""
    parents = PARENT_DEFAULTS.get(level, ())
    return tuple(a for a in carried_by(level)
                 if (a.default and (a.level == level or a.private)) or a.keyword in parents)
