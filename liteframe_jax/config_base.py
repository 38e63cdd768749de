"""The one shape of the library's config dataclasses: validation, dict conversion and the error they raise.

A config is a frozen dataclass that also derives from `ConfigBase` and says how messages call it (`config_name`):

    @dataclasses.dataclass(frozen=True)
    class WAPConfig(ConfigBase):
        config_name: ClassVar[str] = "WAP config"
        window: tuple[int, int, int] = (4, 2, 2)
        def problems(self) -> list[str]: ...   # every impossible value, as one line each

- `validate()` validates the nested configs named in `parts` first (each raises its own error), then raises one
  `ConfigError` ("invalid <config_name>:" and a line per problem) listing every problem `problems()` found, and
  returns the config itself.
- `to_dict()` is JSON-ready: nested configs become dicts, tuples become lists.
- `from_dict(d)` is its inverse, for JSON and for ml_collections `ConfigDict.to_dict()`: lists become the tuples
  the fields are typed as, mappings become the nested configs, unknown or missing fields are a `ConfigError`. It
  does not validate. `_coerce` lets a config normalize raw values first (e.g. a scalar image size).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar


class ConfigError(ValueError):
    """An impossible or unsupported configuration value; the message lists every problem found."""


class ConfigBase:
    """Mixin of the frozen config dataclasses (module doc)."""

    config_name: ClassVar[str] = "config"  # how messages call this config, e.g. "WAP config"
    parts: ClassVar[tuple[str, ...]] = ()  # nested config fields validated before this config's own problems

    def problems(self) -> list[str]:
        """This config's impossible values, one line each (empty when it is fine); its `parts` are valid."""
        return []

    def validate(self, **options):
        """Returns self, or raises ConfigError listing every problem (`options` go to `problems`)."""
        for name in self.parts:
            part = getattr(self, name)
            if part is not None:
                part.validate()
        errors = self.problems(**options)
        if errors:
            raise ConfigError(f"invalid {self.config_name}:\n  - " + "\n  - ".join(errors))
        return self

    def to_dict(self) -> dict[str, Any]:
        return {f.name: to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]):
        return from_plain(cls, d)

    @classmethod
    def _coerce(cls, fields: dict[str, Any]) -> dict[str, Any]:
        """Normalizes raw field values in `from_dict` (after list -> tuple and nested configs); default: as given."""
        return fields

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def to_plain(value):
    """Configs -> dicts, tuples and lists -> lists, recursively; anything else as is."""
    if isinstance(value, ConfigBase):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def from_plain(cls, data):
    """The `cls` config of a mapping (or a ConfigDict); ConfigError for unknown or missing fields."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping) and hasattr(data, "to_dict"):  # an ml_collections ConfigDict
        data = data.to_dict()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{cls.config_name} must be a mapping of its fields, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown {cls.config_name} field(s): {unknown}; known fields: {sorted(fields)}")
    hints = _field_types(cls)
    values = cls._coerce({k: _convert(hints[k], v) for k, v in data.items()})
    missing = sorted(n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if missing:
        raise ConfigError(f"{cls.config_name} is missing field(s) {missing}")
    return cls(**values)


@functools.cache
def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(tp, value):
    """`value` as field type `tp` holds it: lists -> tuples (element-wise), mappings -> nested configs."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(arms[0], value) if len(arms) == 1 else value
    if isinstance(tp, type) and issubclass(tp, ConfigBase):
        return tp.from_dict(value) if not isinstance(value, tp) else value
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        if len(args) == len(value):
            return tuple(_convert(a, v) for a, v in zip(args, value))
        return tuple(value)
    return value
