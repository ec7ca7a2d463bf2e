"""Config dataclasses that serialise themselves (as diffusers' ``ConfigMixin``): ``cfg.to_dict()`` gives plain
values (tuples as lists, nested configs as dicts) that a checkpoint or a JSON file can hold, and
``Cls.from_dict(d)`` rebuilds the dataclass, turning lists back into tuples where the field is a tuple and dicts
back into nested configs. Tuples are handled here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T", bound="ConfigMixin")


def plain(value: Any) -> Any:
    """Dataclasses, tuples and dicts -> dicts and lists, recursively (what ``to_dict`` stores)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _restore(value: Any, hint: Any) -> Any:
    """A stored value back into the field's type: lists -> tuples, dicts -> nested configs."""
    if isinstance(hint, type) and issubclass(hint, ConfigMixin) and isinstance(value, dict):
        return hint.from_dict(value)
    origin = typing.get_origin(hint)
    if origin is typing.Union or str(origin) == "types.UnionType":  # Optional[...] / X | None
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _restore(value, inner[0]) if value is not None and len(inner) == 1 else value
    if (origin is tuple or hint is tuple) and isinstance(value, (list, tuple)):
        return tuple(value)
    return value


class ConfigMixin:
    """Mixed into a ``@dataclass`` config: ``to_dict`` / ``from_dict`` (unknown keys are a ValueError)."""

    def to_dict(self) -> dict:
        return plain(self)

    @classmethod
    def from_dict(cls: type[T], d: dict) -> T:
        if not isinstance(d, dict):
            raise ValueError(f"{cls.__name__}.from_dict takes a dict, got {type(d).__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {unknown}")
        return cls(**{k: _restore(v, hints.get(k)) for k, v in d.items()})
