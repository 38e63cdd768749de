"""Decode a dataset once into a frame store, so training reads frames instead of decoding videos.

    python -m experiments.extract_frames --config configs/ctd.py[:ARGS] --out STORE_DIR [--config.X=V ...]
        [--frame_size native|config] [--encoding raw|jpeg] [--jpeg_quality 95] [--overwrite]

Decodes every example of config.data (all splits, in global index order) with the config's sampling and frame
count, as the CTD pipeline decodes them, and stores the frames with their frame indices; examples that cannot be
read are stored as skipped with their reason (training from the store skips them the same way). The store appears
at STORE_DIR only when complete. Train from it with `--config.data.frame_store=STORE_DIR`: the pipeline checks
that the store matches the data config and that no source file changed since.

--frame_size native (default) keeps the decoded size: crop, resize and flip then happen at training time exactly
as from the videos, for any image_size. `config` stores frames resized to data.image_size: smaller and faster to
read, but random_resized_crop (which cuts the native frame) is refused with such a store. --encoding raw (default)
is lossless uint8; jpeg is smaller and lossy. config.data.num_workers grain processes decode in parallel.
"""

from __future__ import annotations

import sys

from absl import app, flags

from liteframe_jax.cli import check_destination, define_config_flag, error, run

_CONFIG = define_config_flag("config", "Experiment config with a `data` block (configs/ctd.py); --config.a.b=VALUE "
                                       "sets a field.")
_OUT = flags.DEFINE_string("out", None, "Frame store directory to create.")
_FRAME_SIZE = flags.DEFINE_enum("frame_size", "native", ["native", "config"],
                                "native: frames as decoded; config: resized to data.image_size.")
_ENCODING = flags.DEFINE_enum("encoding", "raw", ["raw", "jpeg"], "raw: lossless uint8; jpeg: one JPEG per frame.")
_QUALITY = flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality (1-100) for --encoding=jpeg.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing store (only once the new one is complete).")
flags.mark_flags_as_required(["config", "out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from liteframe_jax.config_base import ConfigError
    from liteframe_jax.data.extract import extract_frame_store
    from liteframe_jax.data.frame_store import FrameStoreError
    from liteframe_jax.data.pipeline import DataConfig, DataError

    if not 1 <= _QUALITY.value <= 100:
        return error(f"--jpeg_quality must be in [1, 100], got {_QUALITY.value}")
    config = _CONFIG.value
    if "data" not in config:
        return error("the config has no `data` block (use configs/ctd.py)")
    problem = check_destination(_OUT.value)
    if problem:
        return error(problem)
    try:
        cfg = DataConfig.from_dict(config.data.to_dict())
        result = extract_frame_store(cfg, _OUT.value, _FRAME_SIZE.value, _ENCODING.value, _QUALITY.value,
                                     _OVERWRITE.value)
    except (ConfigError, DataError, FrameStoreError) as e:
        return error(str(e))
    n = result["stored"]
    per_clip = result["bytes"] / max(n, 1)
    print(f"wrote {n} clips ({result['skipped']} skipped) to {_OUT.value}: {result['bytes'] / 2**30:.2f} GiB, "
          f"{per_clip / 2**20:.2f} MiB per clip, {result['seconds']:.1f} s ({n / max(result['seconds'], 1e-9):.1f} "
          "clips/s)")
    if result["skipped"]:
        print(f"skipped {result['skipped']} unreadable examples: {result['skips'].summary()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run(main)
