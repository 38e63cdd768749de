"""LiteFrame-JAX: efficient video encoders (LiteFrame) for InternVL3-style Video LLMs, in JAX/Flax."""

from liteframe_jax.api import VideoLLM, from_params, load
from liteframe_jax.models.config import ConfigError, InternVLConfig, TextConfig, VisionConfig

__all__ = ["load", "from_params", "VideoLLM", "InternVLConfig", "VisionConfig", "TextConfig", "ConfigError"]
__version__ = "0.1.0"
