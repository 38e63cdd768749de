"""Export an InternVL checkpoint of ours back to a PyTorch InternVL3 directory.

    python -m converters.export_internvl3 --checkpoint DIR --out OUT_DIR --layout original|hf
        [--dtype auto|float32|bfloat16] [--overwrite] [--max_shard_gb 5]

DIR is a LiteFrame-JAX checkpoint of kind "internvl": an imported teacher (converters/import_internvl3.py) or one
that training wrote (LoRA merged). The layout is the key layout of the output:
  hf        transformers-native (as OpenGVLab/InternVL3-8B-hf): loads with
            `InternVLForConditionalGeneration.from_pretrained(OUT_DIR)`, no remote code.
  original  OpenGVLab's remote-code layout (as OpenGVLab/InternVL3-8B): weights and config.json only; loading it in
            PyTorch needs OpenGVLab's modeling .py files, which are not included.
OUT_DIR receives config.json, safetensors weights (sharded above --max_shard_gb, with an index) and the checkpoint's
tokenizer files; it appears only when complete, after its config.json and safetensors headers were read back and
checked. Teacher checkpoints with post-hoc WAP and LiteFrame (student) checkpoints are refused; export the latter
with converters/export_torch.py.
"""

from __future__ import annotations

import time

from absl import app, flags

from liteframe_jax.cli import check_destination, check_source, error, run

LAYOUTS = ("original", "hf")

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "LiteFrame-JAX checkpoint directory of kind 'internvl' "
                                  "(an imported or trained InternVL teacher).")
_OUT = flags.DEFINE_string("out", None, "Output directory for the PyTorch InternVL3 export (must not exist or be "
                           "empty, unless --overwrite).")
_LAYOUT = flags.DEFINE_enum("layout", None, list(LAYOUTS),
                            "Key layout: 'hf' = transformers InternVLForConditionalGeneration (loads without remote "
                            "code); 'original' = OpenGVLab InternVLChatModel keys and config (needs OpenGVLab's "
                            "remote-code files, not included).")
_DTYPE = flags.DEFINE_enum("dtype", "auto", ["auto", "float32", "bfloat16"],
                           "Dtype of the exported weights; auto keeps the checkpoint's.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace OUT_DIR if it exists and is not empty (atomically).")
_MAX_SHARD_GB = flags.DEFINE_float("max_shard_gb", 5.0, "Largest safetensors file in GB (1e9 bytes); bigger "
                                   "models are split into model-0000i-of-0000N.safetensors plus an index. Each "
                                   "file is written from the parameters it holds alone.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # checked here, not with absl validators: those would fire in any process that merely imports this module
    missing = [f"--{n}" for n, f in (("checkpoint", _CHECKPOINT), ("out", _OUT), ("layout", _LAYOUT))
               if f.value is None]
    if missing:
        raise app.UsageError(f"{' and '.join(missing)} required")
    if _MAX_SHARD_GB.value <= 0:
        raise app.UsageError("--max_shard_gb must be positive")
    problem = check_source(_CHECKPOINT.value) or check_destination(_OUT.value)
    if problem:
        return error(problem)
    from liteframe_jax.checkpoints.export_internvl import export_internvl3

    t0 = time.time()
    try:
        out = export_internvl3(_CHECKPOINT.value, _OUT.value, _LAYOUT.value, dtype=_DTYPE.value,
                               overwrite=_OVERWRITE.value, max_shard_bytes=int(_MAX_SHARD_GB.value * 1e9),
                               log=lambda msg: print(msg, flush=True))
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        return error(str(e))
    print(f"wrote {out} ({_LAYOUT.value} layout) in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    run(main)
