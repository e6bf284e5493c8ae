"""One strict decoder for every config dataclass stored as JSON (bundle.json) or in a checkpoint.

`dataclasses.asdict` flattens nested configs into dicts and JSON turns tuples into lists;
`config_from_dict` undoes both from the dataclass's own type hints, refuses a key the class
does not know, and lets a field added after the file was written take its default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Mapping, Self, TypeVar

from generation.presets import check_preset

C = TypeVar("C")


def config_from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
    """Rebuild config dataclass `cls` from its `asdict` form; ValueError on unknown or missing fields."""
    if not isinstance(values, Mapping):
        raise ValueError(f"a {cls.__name__} is stored as a mapping of fields, got {type(values).__name__}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__} does not know the fields {unknown}")
    hints = typing.get_type_hints(cls)
    converted = {name: _convert(hints[name], value) for name, value in values.items()}
    missing = sorted(name for name, field in fields.items() if name not in converted
                     and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING)
    if missing:
        raise ValueError(f"{cls.__name__} lacks the required fields {missing}")
    return cls(**converted)


def _convert(hint: Any, value: Any) -> Any:
    """`value` as type `hint` wants it: nested dataclasses rebuilt, lists turned into tuples."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _convert(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return config_from_dict(hint, value)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], item) for item in value)
        if args and len(args) == len(value):
            return tuple(_convert(arg, item) for arg, item in zip(args, value))
        return tuple(value)
    return value


@dataclass(frozen=True)
class Cadence:
    """When a training loop logs, draws its sample grids and checkpoints, the same fields in every loop.

    Counted in steps; a loop's last step does all three. Loops that count epochs (S, C) also sample
    and checkpoint at each epoch's end, and `checkpoint_minutes` adds a wall-clock checkpoint for
    epochs too long to lose. How a run is driven, not what it learns: a resumed run may change it.
    """

    log_every: int = 10
    sample_every: int = 200
    checkpoint_every: int = 200
    checkpoint_minutes: float | None = None

    def __post_init__(self) -> None:
        if min(self.log_every, self.sample_every, self.checkpoint_every) < 1:
            raise ValueError(f"a cadence counts whole steps (1 or more): {self}")

    def log_due(self, step: int, last: bool = False) -> bool:
        return last or step % self.log_every == 0

    def sample_due(self, step: int, last: bool = False) -> bool:
        return last or step % self.sample_every == 0

    def checkpoint_due(self, step: int, last: bool = False) -> bool:
        return last or step % self.checkpoint_every == 0


# Where the cadence fields sat before `Cadence` gathered them (flat in each train config; S's
# `log_every_steps`): `legacy_cadence` folds them into the nested field so old checkpoints resume.
_FLAT_CADENCE = {"log_every": "log_every", "sample_every": "sample_every", "checkpoint_every": "checkpoint_every",
                 "log_every_steps": "log_every"}


def legacy_cadence(cls: type, values: Mapping[str, Any]) -> Mapping[str, Any]:
    """`values` of a `cls` stored before its cadence fields moved into `cls.cadence`, with them moved."""
    names = {field.name for field in dataclasses.fields(cls)}
    if "cadence" not in names or "cadence" in values:
        return values
    default = next(f for f in dataclasses.fields(cls) if f.name == "cadence").default
    cadence = dataclasses.asdict(default) if dataclasses.is_dataclass(default) else {}
    cadence.update({_FLAT_CADENCE[k]: v for k, v in values.items() if k in _FLAT_CADENCE})
    return {**{k: v for k, v in values.items() if k not in _FLAT_CADENCE}, "cadence": cadence}


# What the tiny preset of a paired loop (E, H, pix2pix) runs with besides its steps and rates: four
# images a batch and four samples, every step logged, a grid and a checkpoint every ten steps.
TINY_PAIRED_RUN: Mapping[str, Any] = MappingProxyType(
    {"batch_size": 4, "sample_count": 4, "cadence": Cadence(log_every=1, sample_every=10, checkpoint_every=10)})


class PresetTable:
    """Mixin of a config dataclass with a `preset` field whose presets differ only in values: the class
    lists them in `PRESETS` (preset -> field values) and `for_preset` is written once, here."""

    PRESETS: ClassVar[Mapping[str, Mapping[str, Any]]]

    @classmethod
    def for_preset(cls, name: str) -> Self:
        """The config of preset `name` (ValueError naming the presets for an unknown one)."""
        return cls(preset=name, **cls.PRESETS[check_preset(name)])  # type: ignore[call-arg]

