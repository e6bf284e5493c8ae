"""One strict decoder for every config dataclass stored as JSON (bundle.json) or in a checkpoint.

`dataclasses.asdict` flattens nested configs into dicts and JSON turns tuples into lists;
`config_from_dict` undoes both from the dataclass's own type hints, refuses a key the class
does not know, and lets a field added after the file was written take its default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping, TypeVar

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
