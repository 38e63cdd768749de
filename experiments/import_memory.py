"""Peak host memory of the InternVL3 importer on a generated multi-GB checkpoint.

    python -m experiments.import_memory --work DIR [--preset 2b|1b|small] [--dtype bf16|fp32] [--shards N]
        [--keep] [--out result.json]

Writes a synthetic InternVL3 checkpoint in the OpenGVLab key layout (what InternVL3-2B ... 78B ship) to
DIR/src: `config.json` + `tokenizer_config.json` + several `model-0000i-of-0000n.safetensors` shards + the index,
random weights, with the sizes of a real family member (preset 2b: InternViT-300M + a Qwen2.5-1.5B-shaped LLM,
151674-token vocabulary, untied lm_head, i.e. InternVL3-2B's layout; 1b: Qwen2.5-0.5B-shaped; small: ~0.5 GB for
tests). The key list and
shapes come from transformers' InternVL built on the meta device (no memory), so they are exactly what the
importer expects; tensors are generated and written one at a time.

Then it runs the import (`convert_internvl3(DIR/src, DIR/out)`, what `converters.import_internvl3` runs) in a
fresh child process and reports that child's peak resident set size (VmHWM, and ru_maxrss of the waited-for
child), next to its peak just before the import (interpreter + JAX + orbax imported: the baseline), the
checkpoint's size and its largest tensor. `--code REPO` imports liteframe_jax from another checkout (e.g. an older
commit, for a before/after comparison). The
import's own peak is `peak - baseline`; a bounded-memory import keeps it near a few times the largest tensor,
whatever the model size. DIR/src and DIR/out are deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# name -> (TinySpec overrides). Vision: InternViT-300M (1024 wide, 24 layers) for the real presets.
PRESETS = {
    "2b": dict(vision_hidden=1024, vision_layers=24, vision_heads=16, vision_mlp=4096, image_size=448,
               text_hidden=1536, text_layers=28, text_heads=12, text_kv_heads=2, text_mlp=8960, vocab_size=151674),
    "1b": dict(vision_hidden=1024, vision_layers=24, vision_heads=16, vision_mlp=4096, image_size=448,
               text_hidden=896, text_layers=24, text_heads=14, text_kv_heads=2, text_mlp=4864, vocab_size=151674),
    # ~0.5 GB in fp32: a 32000 x 512 embedding and lm_head (the largest tensors), 32 small LLM layers
    "small": dict(vision_hidden=256, vision_layers=4, vision_heads=4, vision_mlp=1024, image_size=224,
                  text_hidden=512, text_layers=32, text_heads=8, text_kv_heads=2, text_mlp=1408, vocab_size=32000),
}
_CHILD = """
import json, sys
def hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) * 1024
import liteframe_jax.checkpoints.import_internvl as m
base = hwm()
m.convert_internvl3(sys.argv[1], sys.argv[2])
print(json.dumps({"baseline_bytes": base, "peak_bytes": hwm()}))
"""


def tensor_shapes(preset: str) -> tuple[dict, dict, dict[str, tuple[int, ...]]]:
    """(OpenGVLab config.json, tokenizer_config.json, {key: shape}) of the preset, from transformers' InternVL
    on the meta device."""
    import torch
    from transformers import InternVLForConditionalGeneration

    from testing.tiny_internvl import (TinySpec, _hf_config, hf_runtime_to_original, original_config_dict,
                                      tokenizer_config_dict)

    spec = TinySpec(**PRESETS[preset])
    with torch.device("meta"):
        model = InternVLForConditionalGeneration(_hf_config(spec))
    sd = hf_runtime_to_original(model.state_dict())
    return original_config_dict(spec), tokenizer_config_dict(spec), {k: tuple(v.shape) for k, v in sd.items()}


def write_synthetic(dst: Path, preset: str = "2b", dtype: str = "bf16", num_shards: int = 4,
                    seed: int = 0) -> dict:
    """Writes the synthetic checkpoint to `dst` (config.json, shards, index). Returns its size summary."""
    import ml_dtypes

    from liteframe_jax.checkpoints.safetensors_stream import INDEX_FILE, write_safetensors

    config, tokenizer, shapes = tensor_shapes(preset)
    np_dtype = np.dtype(ml_dtypes.bfloat16 if dtype == "bf16" else np.float32)
    config["torch_dtype"] = config["llm_config"]["torch_dtype"] = "bfloat16" if dtype == "bf16" else "float32"
    nbytes = {k: int(np.prod(s)) * np_dtype.itemsize for k, s in shapes.items()}
    total = sum(nbytes.values())
    # contiguous groups of keys of about total / num_shards bytes each, in state-dict order (as save_pretrained)
    groups, current, size = [], [], 0
    for k in shapes:
        if current and size + nbytes[k] > total / num_shards and len(groups) < num_shards - 1:
            groups.append(current)
            current, size = [], 0
        current.append(k)
        size += nbytes[k]
    groups.append(current)
    dst.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def tensors(keys):
        for k in keys:
            yield k, (rng.standard_normal(shapes[k], dtype=np.float32) * 0.02).astype(np_dtype)

    weight_map = {}
    for i, keys in enumerate(groups):
        name = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        write_safetensors(dst / name, {k: (np_dtype, shapes[k]) for k in keys}, tensors(keys), {"format": "pt"})
        weight_map.update({k: name for k in keys})
    (dst / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (dst / "tokenizer_config.json").write_text(json.dumps(tokenizer, indent=2) + "\n")
    largest = max(nbytes, key=nbytes.get)
    return {"preset": preset, "dtype": dtype, "shards": len(groups), "tensors": len(shapes), "model_bytes": total,
            "largest_tensor": largest, "largest_tensor_bytes": nbytes[largest]}


def measure_import(src: Path, dst: Path, code: Path = ROOT) -> dict:
    """Runs the import (convert_internvl3) in a fresh child whose liteframe_jax comes from `code`; its peak RSS and
    the import-free baseline, in bytes."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.time()
    res = subprocess.run([sys.executable, "-c", _CHILD, str(src.absolute()), str(dst.absolute())], cwd=code,
                         capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"import failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["seconds"] = round(time.time() - t0, 1)
    out["ru_maxrss_children_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    # ru_maxrss of children is the max over all waited-for children: only meaningful if this one set it
    out["ru_maxrss_is_this_child"] = out["ru_maxrss_children_bytes"] > before * 1024
    out["import_bytes"] = out["peak_bytes"] - out["baseline_bytes"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--work", required=True, type=Path, help="scratch directory (src/ and out/ are made in it)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="2b")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--keep", action="store_true", help="keep the generated checkpoint and the import's output")
    p.add_argument("--reuse", action="store_true",
                   help="reuse WORK/src when it holds a finished checkpoint (and keep it)")
    p.add_argument("--out", type=Path, help="also write the result as JSON here")
    p.add_argument("--code", type=Path, default=ROOT, help="checkout whose liteframe_jax is measured (default: this)")
    opts = p.parse_args(argv)
    src, dst = opts.work / "src", opts.work / "out"
    try:
        if opts.reuse and (src / "summary.json").is_file():
            summary = json.loads((src / "summary.json").read_text())
        else:
            shutil.rmtree(src, ignore_errors=True)
            t0 = time.time()
            summary = write_synthetic(src, opts.preset, opts.dtype, opts.shards)
            summary["generate_seconds"] = round(time.time() - t0, 1)
            (src / "summary.json").write_text(json.dumps(summary))
        shutil.rmtree(dst, ignore_errors=True)
        result = {**summary, **measure_import(src, dst, opts.code), "code": str(opts.code)}
    finally:
        if not opts.keep:
            shutil.rmtree(dst, ignore_errors=True)
            if not opts.reuse:
                shutil.rmtree(src, ignore_errors=True)
    gb = 1 / 2 ** 30
    print(f"model {result['model_bytes'] * gb:.2f} GiB ({result['tensors']} tensors, {result['shards']} shards, "
          f"{result['dtype']}); largest tensor {result['largest_tensor']} {result['largest_tensor_bytes'] * gb:.3f} "
          f"GiB\npeak RSS {result['peak_bytes'] * gb:.2f} GiB, baseline (modules imported) "
          f"{result['baseline_bytes'] * gb:.2f} GiB, import {result['import_bytes'] * gb:.2f} GiB = "
          f"{result['import_bytes'] / result['model_bytes']:.2f} x model, "
          f"{result['import_bytes'] / result['largest_tensor_bytes']:.1f} x largest tensor; {result['seconds']} s")
    if opts.out:
        opts.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
