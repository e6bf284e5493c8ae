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


# keyword, tag, VR, level, then `default` and/or `matching` where they hold (see the module doc)
TABLE = """
StudyDate                      00080020 DA study    default matching
StudyTime                      00080030 TM study    default
AccessionNumber                00080050 SH study    default matching
ModalitiesInStudy              00080061 CS study    default matching
ReferringPhysicianName         00080090 PN study    default
StudyDescription               00081030 LO study    matching
PatientName                    00100010 PN study    default matching
PatientID                      00100020 LO study    default matching
PatientBirthDate               00100030 DA study    default
PatientSex                     00100040 CS study    default
StudyInstanceUID               0020000D UI study    default matching
StudyID                        00200010 SH study    default
NumberOfStudyRelatedSeries     00201206 IS study    default
NumberOfStudyRelatedInstances  00201208 IS study    default
SeriesDate                     00080021 DA series   matching
SeriesTime                     00080031 TM series
Modality                       00080060 CS series   default matching
SeriesDescription              0008103E LO series   default matching
SeriesInstanceUID              0020000E UI series   default matching
SeriesNumber                   00200011 IS series   default
NumberOfSeriesRelatedInstances 00201209 IS series   default
SOPClassUID                    00080016 UI instance default matching
SOPInstanceUID                 00080018 UI instance default matching
RetrieveURL                    00081190 UR instance default
InstanceNumber                 00200013 IS instance default
Rows                           00280010 US instance default
Columns                        00280011 US instance default
Sketch2MedIRank                00111001 IS study    default
Sketch2MedIScore               00111002 DS study    default
"""  # the last two: the query's rank and fused score of the item's best match, at every level


def _row(line: str) -> Attribute:
    keyword, tag, vr, level, *roles = line.split()
    return Attribute(keyword, tag, vr, level, default="default" in roles, matching="matching" in roles)


ATTRIBUTES = tuple(_row(line) for line in TABLE.strip().splitlines())
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
