"""Import a PyTorch InternVL3 checkpoint into a LiteFrame-JAX checkpoint.

    python -m converters.import_internvl3 --src HF_DIR --dst OUT_DIR [--dtype auto|float32|bfloat16]

HF_DIR is a local InternVL3 directory (config.json + model.safetensors, or sharded *.safetensors + index json) in
either key layout: the OpenGVLab remote-code layout (InternVL3-8B) or the transformers-native layout
(InternVL3-8B-hf, on-disk or in-memory key names); the layout is detected from the keys. Every key and shape is
checked against the model described by HF_DIR's own config.json before anything is written; the output
(orbax params + liteframe.json + tokenizer files) appears at OUT_DIR only when complete.
"""

from __future__ import annotations

import sys
import time

from absl import app, flags

from liteframe_jax.cli import check_destination, check_source, error, run

_SRC = flags.DEFINE_string("src", None, "Local InternVL3 checkpoint directory (PyTorch / Hugging Face format).")
_DST = flags.DEFINE_string("dst", None, "Output directory for the LiteFrame-JAX checkpoint (must not exist).")
_DTYPE = flags.DEFINE_enum("dtype", "auto", ["auto", "float32", "bfloat16"],
                           "Parameter dtype to store; auto keeps the checkpoint's own floating dtype.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace OUT_DIR if it exists (atomically).")
_ALLOW_PICKLE = flags.DEFINE_bool("allow_pickle", False,
                                  "Also read .bin/.pt pickle weights (with torch.load(weights_only=True)). "
                                  "Off by default: pickle files can run code when loaded.")
_IMAGE_TOKEN_ID = flags.DEFINE_integer("image_token_id", None,
                                       "Id of <IMG_CONTEXT> when neither config.json nor the tokenizer files "
                                       "declare it.")
flags.register_validator("src", lambda v: v is not None, "--src is required")
flags.register_validator("dst", lambda v: v is not None, "--dst is required")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from tqdm import tqdm

    from liteframe_jax.checkpoints.import_internvl import convert_internvl3

    bar = None

    def progress(i, n, key):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=n, unit="tensor", desc="importing", file=sys.stderr)
        bar.update(1)

    problem = check_source(_SRC.value) or check_destination(_DST.value)
    if problem:
        return error(problem)
    t0 = time.time()
    try:
        out = convert_internvl3(_SRC.value, _DST.value, dtype=_DTYPE.value, allow_pickle=_ALLOW_PICKLE.value,
                                image_token_id=_IMAGE_TOKEN_ID.value, overwrite=_OVERWRITE.value, progress=progress)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        if bar is not None:
            bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 1
    if bar is not None:
        bar.close()
    print(f"wrote {out} in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    run(main)
