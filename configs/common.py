"""Helpers shared by the experiment configs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ml_collections

from liteframe_jax.models.config import InternVLConfig


def parse_arg(arg: str | None, *, choices: Mapping[str, Sequence[str]] | None = None,
              **defaults) -> ml_collections.ConfigDict:
    """The argument after the config file's colon -> ConfigDict of `defaults` overridden by it.

    Items are comma-separated: `key=value` (cast to the default's type) or a bare word (the big_vision habit):
    the name of a boolean argument (sets it true) or a value listed in `choices` for exactly one argument, so
    `configs/ctd.py:tiny` means `variant=tiny` when choices={"variant": ("tiny", "8b")}. A value outside an
    argument's choices is refused, naming them."""
    choices = {k: tuple(v) for k, v in (choices or {}).items()}
    unknown_choice_keys = sorted(set(choices) - set(defaults))
    if unknown_choice_keys:
        raise ValueError(f"choices given for unknown config arguments {unknown_choice_keys}")
    out = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or "").split(",")):
        if "=" in item:
            key, value = item.split("=", 1)
        else:
            key, value = _bare_word(item, choices, defaults), None
        if key not in defaults:
            raise ValueError(f"unknown config argument {key!r}; known: {sorted(defaults)}")
        kind = type(defaults[key])
        if value is None:
            out[key] = True if kind is bool else item
        else:
            out[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
        if key in choices and out[key] not in choices[key]:
            raise ValueError(f"config argument {key}={out[key]!r} must be one of {list(choices[key])}")
    return out


def _bare_word(word: str, choices: dict[str, tuple], defaults: dict) -> str:
    """The argument a bare word sets: a boolean argument of that name, or the one argument whose choices hold it."""
    if isinstance(defaults.get(word), bool):
        return word
    owners = [k for k, values in choices.items() if word in values]
    if len(owners) == 1:
        return owners[0]
    if owners:
        raise ValueError(f"config word {word!r} is ambiguous: a value of {owners}; write key={word}")
    words = sorted({v for values in choices.values() for v in values}
                   | {k for k, v in defaults.items() if isinstance(v, bool)})
    raise ValueError(f"config argument {word!r} must look like key=value"
                     + (f" or be one of the words {words}" if words else ""))


def model_config_dict(cfg: InternVLConfig) -> ml_collections.ConfigDict:
    d = cfg.to_dict()
    d["vision"]["image_size"] = tuple(d["vision"]["image_size"])
    return ml_collections.ConfigDict(d)


def model_from_config(config: ml_collections.ConfigDict) -> InternVLConfig:
    """The validated model config of an experiment config (`config.model`)."""
    return InternVLConfig.from_dict(config.model.to_dict()).validate()
