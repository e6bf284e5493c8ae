"""QIDO-RS query parameters -> which items match and which attributes are returned (PS3.18 8.3.4, PS3.4 C.2.2.2).

Matching keys are keywords or tags (`PatientID`, `00100020`). A value that is empty or `*` matches
everything (universal matching). Otherwise a `\\`-separated list matches when any of its values
does (UIDs and code strings also split on commas, as dicomweb-client sends a list); text values
take the wildcards `*` (any run) and `?` (one character); dates match exactly or as inclusive
ranges `a-b`, `a-`, `-b`; UIDs match exactly. Person names match regardless of case, other text
exactly unless `fuzzymatching=true`. An item with no value matches only universal matching. Keys
the facade does not know or does not match on (`PatientBirthDate`, ...), and a lower level's keys
at a higher level (`SeriesInstanceUID` for studies), are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from api.qido.attributes import Attribute, carried_by, defaults, named
from formats.errors import InputError

Values = Mapping[str, tuple[Any, ...]]  # an item's attribute values by keyword; () when it has none
DATE = re.compile(r"\d{8}")
CONTROL = ("limit", "offset", "includefield", "fuzzymatching")
DATE_RULE = "must be a date YYYYMMDD or an inclusive range YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD"


@dataclass(frozen=True)
class Condition:
    attribute: Attribute
    accepts: Callable[[str], bool] | None  # one of the item's values (as text) -> whether it matches; None: universal

    def holds(self, values: Values) -> bool:
        if self.accepts is None:
            return True
        return any(self.accepts(str(value)) for value in values.get(self.attribute.keyword, ()))


@dataclass(frozen=True)
class QidoQuery:
    conditions: tuple[Condition, ...]
    included: frozenset[str] | None  # keywords asked by includefield; None for `all`

    def matches(self, values: Values, level: str) -> bool:
        """Whether an item of `level` meets every condition on an attribute it carries (a lower level's key is ignored)."""
        carried = carried_by(level)
        return all(condition.holds(values) for condition in self.conditions if condition.attribute in carried)

    def returned(self, level: str) -> tuple[Attribute, ...]:
        """The attributes an item of `level` answers: defaults, includefield's and the matching keys, in tag order."""
        carried = carried_by(level)
        wanted = {a.keyword for a in defaults(level)} | {c.attribute.keyword for c in self.conditions}
        wanted |= {a.keyword for a in carried} if self.included is None else set(self.included)
        return tuple(sorted((a for a in carried if a.keyword in wanted), key=lambda a: a.tag))


def _wildcard(pattern: str, fold: bool) -> Callable[[str], bool]:
    if "*" not in pattern and "?" not in pattern:
        wanted = pattern.casefold() if fold else pattern
        return lambda value: (value.strip().casefold() if fold else value.strip()) == wanted
    regex = re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern),
                       re.IGNORECASE if fold else 0)
    return lambda value: regex.fullmatch(value.strip()) is not None


def _date_range(attribute: Attribute, text: str) -> Callable[[str], bool]:
    low, dash, high = text.partition("-")
    bounds = [bound for bound in (low, high) if bound]
    if not bounds or not all(DATE.fullmatch(bound) for bound in bounds) or (not dash and high):
        raise InputError(f"the QIDO key {attribute.keyword} {DATE_RULE}")
    if not dash:
        return lambda value: value == low
    return lambda value: (not low or value >= low) and (not high or value <= high)


def _condition(attribute: Attribute, raw: str, fuzzy: bool) -> Condition:
    text = raw.strip()
    if text in ("", "*"):
        return Condition(attribute, None)  # universal matching: the key is only returned
    if attribute.vr == "DA":
        return Condition(attribute, _date_range(attribute, text))
    separators = r"[\\,]" if attribute.vr in ("UI", "CS") else r"\\"
    wanted = [part.strip() for part in re.split(separators, text) if part.strip()]
    if attribute.vr == "UI":
        allowed = set(wanted)
        return Condition(attribute, lambda value: value in allowed)
    tests = [_wildcard(part, fold=fuzzy or attribute.vr == "PN") for part in wanted]
    return Condition(attribute, lambda value: any(test(value) for test in tests))


def _included(values: Iterable[str]) -> frozenset[str] | None:
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if any(name.lower() == "all" for name in names):
        return None
    return frozenset(attribute.keyword for name in names if (attribute := named(name)) is not None)


def parse(params: Sequence[tuple[str, str]]) -> QidoQuery:
    """The request's query parameters (every occurrence, in order) -> the conditions and includefield;
    a malformed date is one InputError sentence naming the key, never the value."""
    fuzzy = any(name.lower() == "fuzzymatching" and value.strip().lower() == "true" for name, value in params)
    conditions = []
    for name, value in params:
        attribute = None if name.lower() in CONTROL else named(name)
        if attribute is not None and attribute.matching:
            conditions.append(_condition(attribute, value, fuzzy))
    return QidoQuery(tuple(conditions), _included(value for name, value in params if name.lower() == "includefield"))
