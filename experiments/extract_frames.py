"""Decode a dataset once into a frame store, so training reads frames instead of decoding videos.

    python -m experiments.extract_frames --config configs/ctd.py[:ARGS] --out STORE_DIR [--config.X=V ...]
        [--frame_size native|config] [--encoding raw|jpeg] [--jpeg_quality 95] [--overwrite]
    python -m experiments.extract_frames --config configs/lma.py[:ARGS] --out STORE_DIR [--frames 64,256,512] ...

Decodes every example of config.data (all splits, in global index order) with the config's sampling and frame
count, as the CTD pipeline decodes them, and stores the frames with their frame indices; examples that cannot be
read are stored as skipped with their reason (training from the store skips them the same way). The store appears
at STORE_DIR only when complete. Train from it with `--config.data.frame_store=STORE_DIR`: the pipeline checks
that the store matches the data config and that no source file changed since.

--frame_size native (default) keeps the decoded size: crop, resize and flip then happen at training time exactly
as from the videos, for any image_size. `config` stores frames resized to data.image_size: smaller and faster to
read, but random_resized_crop (which cuts the native frame) is refused with such a store. --encoding raw (default)
is lossless uint8; jpeg is smaller and lossy. config.data.num_workers grain processes decode in parallel.

With an LMA config (configs/lma.py) it decodes the clips of the QA records (train file, then eval file; a clip
shared by several records is stored once) at every frame count of config.curriculum (or --frames), with the
config's sampling, as the LMA pipeline samples them, into STORE_DIR/frames_<T>, one frame store per frame count;
STORE_DIR appears only when all are written. Train from it with `--config.data.frame_store=STORE_DIR`. LMA does
not augment, so --frame_size=config loses nothing (but ties the store to data.image_size).
"""

from __future__ import annotations

import sys

from absl import app, flags

from liteframe_jax.cli import check_destination, define_config_flag, error, run

_CONFIG = define_config_flag("config", "Experiment config with a `data` block (configs/ctd.py or configs/lma.py); "
                                       "--config.a.b=VALUE sets a field.")
_OUT = flags.DEFINE_string("out", None, "Frame store directory to create.")
_FRAME_SIZE = flags.DEFINE_enum("frame_size", "native", ["native", "config"],
                                "native: frames as decoded; config: resized to data.image_size.")
_ENCODING = flags.DEFINE_enum("encoding", "raw", ["raw", "jpeg"], "raw: lossless uint8; jpeg: one JPEG per frame.")
_QUALITY = flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality (1-100) for --encoding=jpeg.")
_FRAMES = flags.DEFINE_list("frames", [], "LMA configs: the frame counts to extract (default: those of "
                                          "config.curriculum).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing store (only once the new one is complete).")
flags.mark_flags_as_required(["config", "out"])


def _frame_counts(config) -> list[int]:
    """--frames as integers, or the frame counts of the LMA config's curriculum; ValueError for bad ones."""
    from liteframe_jax.train.experiment import parse_curriculum

    if not _FRAMES.value:
        return sorted({t for t, _ in parse_curriculum(config.curriculum)})
    try:
        counts = [int(v) for v in _FRAMES.value]
    except ValueError:
        raise ValueError(f"--frames must be integers, got {','.join(_FRAMES.value)}") from None
    if min(counts) < 1:
        raise ValueError(f"--frames must be >= 1, got {','.join(_FRAMES.value)}")
    return counts


def _extract_lma(config) -> int:
    """Extracts the QA store directory of an LMA config; prints one line per frame count."""
    from liteframe_jax.data.extract import extract_qa_frame_stores
    from liteframe_jax.train.qa_data import load_qa_records, qa_config

    counts = _frame_counts(config)
    train, evaluate = load_qa_records(config, log=lambda line: print(line, file=sys.stderr))
    result = extract_qa_frame_stores([train, evaluate], qa_config(config, counts[0]), counts, _OUT.value,
                                     _FRAME_SIZE.value, _ENCODING.value, _QUALITY.value, _OVERWRITE.value)
    for t, r in result["per_frames"].items():
        print(f"{t} frames: {r['stored']} clips ({r['skipped']} skipped), {r['bytes'] / 2**30:.2f} GiB, "
              f"{r['bytes'] / max(r['stored'], 1) / 2**20:.2f} MiB per clip")
        if r["skipped"]:
            print(f"{t} frames: skipped {r['skipped']} unreadable clips: {r['skips'].summary()}", file=sys.stderr)
    n = result["clips"] * len(result["per_frames"])
    print(f"wrote {result['clips']} clips of {result['records']} records at {len(counts)} frame count(s) to "
          f"{_OUT.value}: {result['bytes'] / 2**30:.2f} GiB, {result['seconds']:.1f} s "
          f"({n / max(result['seconds'], 1e-9):.1f} clips/s)")
    return 0


def _extract_ctd(config) -> int:
    """Extracts the frame store of a CTD config's data block; prints a summary."""
    from liteframe_jax.data.extract import extract_frame_store
    from liteframe_jax.data.pipeline import DataConfig

    if _FRAMES.value:
        return error("--frames is for LMA configs (a CTD store holds data.num_frames frames per clip)")
    cfg = DataConfig.from_dict(config.data.to_dict())
    result = extract_frame_store(cfg, _OUT.value, _FRAME_SIZE.value, _ENCODING.value, _QUALITY.value,
                                 _OVERWRITE.value)
    n = result["stored"]
    per_clip = result["bytes"] / max(n, 1)
    print(f"wrote {n} clips ({result['skipped']} skipped) to {_OUT.value}: {result['bytes'] / 2**30:.2f} GiB, "
          f"{per_clip / 2**20:.2f} MiB per clip, {result['seconds']:.1f} s ({n / max(result['seconds'], 1e-9):.1f} "
          "clips/s)")
    if result["skipped"]:
        print(f"skipped {result['skipped']} unreadable examples: {result['skips'].summary()}", file=sys.stderr)
    return 0


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not 1 <= _QUALITY.value <= 100:
        return error(f"--jpeg_quality must be in [1, 100], got {_QUALITY.value}")
    config = _CONFIG.value
    if "data" not in config:
        return error("the config has no `data` block (use configs/ctd.py or configs/lma.py)")
    problem = check_destination(_OUT.value)
    if problem:
        return error(problem)
    try:
        return _extract_lma(config) if config.get("kind") == "lma" else _extract_ctd(config)
    except ValueError as e:  # ConfigError, DataError, FrameStoreError, a bad curriculum or --frames
        return error(str(e))


if __name__ == "__main__":
    run(main)
