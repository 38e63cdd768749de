"""Run the frozen teacher + WAP once over a dataset and store the CTD targets in a tensorstore zarr cache.

    python -m experiments.precompute_teacher --config configs/ctd.py[:ARGS] --out CACHE_DIR [--config.X=V ...]

Uses the config's teacher, WAP and data (un-augmented frames: cached targets cannot follow random crops), writes
targets (N, T', H', W', C) and the frame indices used, one example per chunk; the cache appears at CACHE_DIR only
when complete. Train from it with `--config.train.target_cache=CACHE_DIR`; the trainer checks that the cache
matches its data, WAP and teacher.
"""

from __future__ import annotations

import sys

from absl import app, flags

from liteframe_jax.cli import define_config_flag, run

_CONFIG = define_config_flag("config", "CTD experiment config (teacher, wap, data); --config.a.b=VALUE sets a field.")
_OUT = flags.DEFINE_string("out", None, "Cache directory to create.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Clips per teacher forward.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing cache.")
flags.mark_flags_as_required(["config", "out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import jax
    import numpy as np
    from tqdm import tqdm

    from liteframe_jax.compression.teacher_targets import teacher_targets
    from liteframe_jax.data.pipeline import build_dataset, cache_identity, load_examples
    from liteframe_jax.data.target_cache import TargetCacheWriter
    from liteframe_jax.sharding import make_mesh, rules_from_config
    from liteframe_jax.train import ctd
    from liteframe_jax.train.experiment import parse_ctd
    from liteframe_jax.train.teacher import teacher_identity

    config = _CONFIG.value
    if _BATCH.value < 1:
        raise app.UsageError("--batch_size must be >= 1")
    try:
        exp = parse_ctd(config, process_count=jax.process_count())
        setup, data_cfg = exp.setup, exp.data.replace(num_epochs=1, random_resized_crop_scale=None, hflip=False)
        mesh = make_mesh({"data": 1}, jax.local_devices()[:1])
        teacher = ctd.teacher_params(config, setup, mesh, rules_from_config(config.sharding_rules))
        examples = load_examples(data_cfg)
        target_shape = setup.student.output_shape(data_cfg.num_frames)
        metadata = {"data": {**data_cfg.to_dict(), **cache_identity(data_cfg, examples)["data"]},
                    "wap": setup.wap.to_dict(), "teacher": teacher_identity(config)}
        ds, skips = build_dataset(data_cfg, "all", _BATCH.value, augment=False, drop_remainder=False)
        with TargetCacheWriter(_OUT.value, len(examples), target_shape, num_frames=data_cfg.num_frames,
                               metadata=metadata, overwrite=_OVERWRITE.value) as writer:
            with tqdm(total=len(examples), unit="clip", desc="teacher targets", file=sys.stderr) as bar:
                for batch in ds:
                    targets = teacher_targets(setup.teacher, teacher, batch["pixels"], setup.wap)
                    writer.write(batch["index"], np.asarray(targets), batch["frame_indices"])
                    bar.update(len(batch["index"]))
            if skips.count:
                print(f"skipped {skips.count} unreadable examples: {skips.summary()}", file=sys.stderr)
                writer.close(allow_partial=True)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(examples) - skips.count} targets of shape {target_shape} to {_OUT.value}")
    return 0


if __name__ == "__main__":
    run(main)
