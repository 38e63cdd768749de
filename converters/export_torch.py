"""Export a LiteFrame checkpoint to a PyTorch / transformers directory (loaded with trust_remote_code=True).

    python -m converters.export_torch --checkpoint DIR --dst OUT_DIR [--dtype float32|bfloat16] [--overwrite]

DIR is a LiteFrame-JAX checkpoint of kind "liteframe": an LMA result (student + projector + LLM, LoRA adapters are
merged) exports as `LiteFrameForConditionalGeneration` (AutoModelForCausalLM); a CTD result (encoder only) exports as
`LiteFrameStudentModel` (AutoModel), the student plus the teacher's projector. OUT_DIR receives config.json (with
auto_map), model.safetensors, the modeling files, generation_config.json (full model) and the checkpoint's tokenizer
files; a full model with tokenizer files also gets a processor (AutoProcessor: processing_liteframe.py, the
LiteFrame-JAX modules it uses, processor_config.json) that turns a video and a question into inputs exactly as
`python -m liteframe_jax.generate` does. OUT_DIR appears only when complete.

    from transformers import AutoModelForCausalLM, AutoProcessor
    model = AutoModelForCausalLM.from_pretrained(OUT_DIR, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(OUT_DIR, trust_remote_code=True)
    print(model.chat(processor, "video.mp4", "What happens in the video?"))

or by hand:

    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(OUT_DIR, trust_remote_code=True, dtype="auto")
    out = model.generate(input_ids, pixel_values=pixels, attention_mask=mask, do_sample=False, max_new_tokens=64)

pixel_values are (clips, frames, 3, H, W), normalized like the teacher's frames (channels first).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from absl import app, flags

from liteframe_jax.cli import check_destination, check_source, error, run

MODELING_DIR = Path(__file__).parent / "torch_modeling"
MODELING_FILES = ("configuration_liteframe.py", "modeling_liteframe.py")
PROCESSOR_FILE = "processing_liteframe.py"
PROCESSOR_CONFIG = "processor_config.json"
# LiteFrame-JAX's own numpy-only modules, copied beside the processor (one source of truth for sampling,
# normalization and prompts): export name -> module file under liteframe_jax/data
PROCESSOR_MODULES = {"liteframe_sampling.py": "sampling.py", "liteframe_frames.py": "frames.py",
                     "liteframe_prompts.py": "prompts.py"}
DATA_DIR = Path(__file__).resolve().parents[1] / "liteframe_jax" / "data"
DTYPES = ("float32", "bfloat16")
WEIGHTS_FILE = "model.safetensors"

FULL_ARCH = "LiteFrameForConditionalGeneration"
ENCODER_ARCH = "LiteFrameStudentModel"
AUTO_MAP = {
    True: {"AutoConfig": "configuration_liteframe.LiteFrameConfig",
           "AutoModelForCausalLM": "modeling_liteframe.LiteFrameForConditionalGeneration",
           "AutoModelForImageTextToText": "modeling_liteframe.LiteFrameForConditionalGeneration"},
    False: {"AutoConfig": "configuration_liteframe.LiteFrameStudentConfig",
            "AutoModel": "modeling_liteframe.LiteFrameStudentModel"},
}


def _say(msg: str, verbose: bool) -> None:
    if verbose:
        print(msg, flush=True)


def _load_checkpoint(checkpoint: Path):
    """-> (cfg, params with LoRA merged, metadata). Clear errors for anything that is not a LiteFrame checkpoint."""
    from liteframe_jax.checkpoints import store
    from liteframe_jax.checkpoints.liteframe_store import load_liteframe, read_liteframe_metadata

    if not checkpoint.is_dir():
        raise FileNotFoundError(f"{checkpoint} is not a directory")
    if not store.is_checkpoint(checkpoint):
        raise FileNotFoundError(f"{checkpoint} is not a LiteFrame-JAX checkpoint (no {store.CONFIG_FILE} + "
                                f"{store.PARAMS_DIR}/); export needs a LiteFrame model (kind 'liteframe')")
    read_liteframe_metadata(checkpoint)  # ValueError for a teacher ("internvl") or other kinds
    return load_liteframe(checkpoint)


def _torch_state(params, dtype: str):
    """Our params -> {key: torch tensor} in `dtype` (each its own contiguous storage)."""
    import numpy as np
    import torch

    from converters.liteframe_torch_layout import to_torch_state

    target = torch.float32 if dtype == "float32" else torch.bfloat16
    return {key: torch.from_numpy(np.array(x, dtype=np.float32, copy=True)).to(target).contiguous()
            for key, x in to_torch_state(params).items()}


def _hf_config(cfg, with_llm: bool, dtype: str):
    """Validated transformers config object (our configuration classes) with auto_map and architectures."""
    from converters.liteframe_torch_layout import config_to_hf
    from converters.torch_modeling.configuration_liteframe import LiteFrameConfig, LiteFrameStudentConfig

    fields = config_to_hf(cfg, with_llm)
    fields.pop("model_type")
    config = (LiteFrameConfig if with_llm else LiteFrameStudentConfig)(**fields, dtype=dtype)
    config.auto_map = AUTO_MAP[with_llm]
    config.architectures = [FULL_ARCH if with_llm else ENCODER_ARCH]
    return config


def _generation_config(cfg) -> dict:
    t = cfg.teacher
    out = {"do_sample": False, "num_beams": 1}
    if t.eos_token_id is not None:
        out["eos_token_id"] = t.eos_token_id
    if t.pad_token_id is not None:
        out["pad_token_id"] = t.pad_token_id
    elif t.eos_token_id is not None:
        out["pad_token_id"] = t.eos_token_id
    return out


def processor_config(cfg) -> dict:
    """processor_config.json of a Video LLM export: the frame layout of `python -m liteframe_jax.generate` (default
    frame count, native image size, frames and LLM tokens per `<img>` group, InternVL's system message)."""
    from liteframe_jax.generate import DEFAULT_FRAMES
    from liteframe_jax.models.visual_path import for_model

    visual = for_model(cfg)
    return {"processor_class": "LiteFrameProcessor",
            "auto_map": {"AutoProcessor": f"{PROCESSOR_FILE[:-3]}.LiteFrameProcessor"},
            "num_frames": DEFAULT_FRAMES, "image_size": list(visual.image_size),
            "frames_per_group": visual.frames_per_group, "tokens_per_group": visual.tokens_per_group(),
            "system_message": "default"}


def _write_processor(cfg, tmp: Path, verbose: bool) -> None:
    """The processor (remote code + LiteFrame-JAX's sampling/frames/prompts modules + processor_config.json)."""
    shutil.copy2(MODELING_DIR / PROCESSOR_FILE, tmp / PROCESSOR_FILE)
    for name, source in PROCESSOR_MODULES.items():
        shutil.copy2(DATA_DIR / source, tmp / name)
    config = processor_config(cfg)
    (tmp / PROCESSOR_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    _say(f"  processor: {PROCESSOR_FILE}, {', '.join(PROCESSOR_MODULES)}, {PROCESSOR_CONFIG} ({config['num_frames']} "
         f"frames of {config['image_size'][0]}x{config['image_size'][1]}, {config['frames_per_group']} frame(s) and "
         f"{config['tokens_per_group']} tokens per group)", verbose)


def export_liteframe(checkpoint: str | Path, dst: str | Path, dtype: str = "float32", overwrite: bool = False,
                     verbose: bool = True) -> Path:
    """Writes the PyTorch export of LiteFrame checkpoint `checkpoint` to `dst` atomically; returns `dst`.

    Raises FileNotFoundError / ValueError (nothing written) when `checkpoint` is not a LiteFrame checkpoint,
    FileExistsError when `dst` exists and not `overwrite`."""
    from safetensors.torch import save_file

    from liteframe_jax.checkpoints.hf_config import TOKENIZER_FILES
    from liteframe_jax.checkpoints.store import atomic_directory

    checkpoint, dst = Path(checkpoint), Path(dst)
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} must be one of {DTYPES}")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} already exists (pass --overwrite to replace it)")
    if dst.absolute() == checkpoint.absolute():
        raise ValueError("--dst must differ from --checkpoint")
    cfg, params, meta = _load_checkpoint(checkpoint)
    with_llm = "llm" in params
    what = "Video LLM (student + projector + Qwen2)" if with_llm else "encoder only (student + projector)"
    _say(f"loaded {checkpoint} (stage {meta.get('stage')!r}, {what}"
         f"{', LoRA merged' if meta.get('lora') else ''})", verbose)
    state = _torch_state(params, dtype)
    n_params = sum(t.numel() for t in state.values())
    config = _hf_config(cfg, with_llm, dtype)
    with atomic_directory(dst, overwrite) as tmp:
        config.save_pretrained(tmp)
        _say(f"  config.json ({config.architectures[0]}, auto_map {sorted(config.auto_map)})", verbose)
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        _say(f"  {WEIGHTS_FILE}: {len(state)} tensors, {n_params:,} parameters, {dtype}", verbose)
        for name in MODELING_FILES:
            shutil.copy2(MODELING_DIR / name, tmp / name)
        _say(f"  {', '.join(MODELING_FILES)}", verbose)
        if with_llm:
            gen = _generation_config(cfg)
            (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
            _say(f"  generation_config.json (greedy, eos {gen.get('eos_token_id')}, pad {gen.get('pad_token_id')})",
                 verbose)
        copied = [n for n in TOKENIZER_FILES if n != "generation_config.json" and (checkpoint / n).is_file()]
        for name in copied:
            shutil.copy2(checkpoint / name, tmp / name)
        _say(f"  tokenizer files: {', '.join(copied) if copied else 'none in the checkpoint'}", verbose)
        if with_llm and copied:
            _write_processor(cfg, tmp, verbose)
        elif with_llm:
            _say("  no processor (it needs the checkpoint's tokenizer files)", verbose)
    return dst


# ---------------------------------------------------------------------------------------------- CLI
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "LiteFrame-JAX checkpoint directory (kind 'liteframe': a CTD "
                                  "encoder or an LMA Video LLM; LoRA adapters are merged).")
_DST = flags.DEFINE_string("dst", None, "Output directory for the PyTorch/transformers export (must not exist "
                           "unless --overwrite).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", list(DTYPES), "Dtype of the exported weights.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace OUT_DIR if it exists (atomically).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # checked here, not with absl validators: those would fire in any process that merely imports this module
    missing = [f"--{n}" for n, f in (("checkpoint", _CHECKPOINT), ("dst", _DST)) if f.value is None]
    if missing:
        raise app.UsageError(f"{' and '.join(missing)} required")
    problem = check_source(_CHECKPOINT.value) or check_destination(_DST.value)
    if problem:
        return error(problem)
    t0 = time.time()
    try:
        out = export_liteframe(_CHECKPOINT.value, _DST.value, dtype=_DTYPE.value, overwrite=_OVERWRITE.value)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    run(main)
