"""Helpers shared by the experiment configs."""

from __future__ import annotations

import ml_collections

from liteframe_jax.models.config import InternVLConfig


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """'a=1,b=x' -> ConfigDict with `defaults` overridden (values cast to the default's type)."""
    out = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or "").split(",")):
        if "=" not in item:
            raise ValueError(f"config argument {item!r} must look like key=value")
        key, value = item.split("=", 1)
        if key not in defaults:
            raise ValueError(f"unknown config argument {key!r}; known: {sorted(defaults)}")
        kind = type(defaults[key])
        out[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return out


def model_config_dict(cfg: InternVLConfig) -> ml_collections.ConfigDict:
    d = cfg.to_dict()
    d["vision"]["image_size"] = tuple(d["vision"]["image_size"])
    return ml_collections.ConfigDict(d)


def model_from_config(config: ml_collections.ConfigDict) -> InternVLConfig:
    """The validated model config of an experiment config (`config.model`)."""
    return InternVLConfig.from_dict(config.model.to_dict()).validate()
