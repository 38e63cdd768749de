"""The processor of PyTorch exports: the same inputs and greedy answers as the JAX `generate` path, without JAX.

A tiny random fp32 LiteFrame Video LLM built as in test_export_torch (4-frame groups, so 6 frames make the groups
"Frame1-4" and "Frame5-6") with the tiny tokenizer, exported; a synthetic non-square mp4 (resized on both axes).
Input parity is recorded as max|torch - jax| of the pixel values (record_property).
"""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import liteframe_jax as lf
from configs import internvl3_tiny
from configs.common import model_from_config
from converters.export_torch import PROCESSOR_CONFIG, PROCESSOR_FILE, PROCESSOR_MODULES, export_liteframe
from converters.torch_modeling.processing_liteframe import LiteFrameProcessor, VideoReadError
from liteframe_jax.checkpoints.liteframe_store import save_liteframe
from liteframe_jax.data.frames import moving_square_clip, normalize_frames
from liteframe_jax.data.pipeline import crop_resize
from liteframe_jax.data.sampling import segment_middle_indices
from liteframe_jax.data.tokenizer import load_tokenizer, save_tiny_tokenizer
from liteframe_jax.data.video import write_video
from liteframe_jax.generate import clip_pixels, prompt_layout, system_message_arg, video_record
from liteframe_jax.data.qa_pipeline import prompt_ids
from liteframe_jax.models.liteframe import LiteFrameConfig
from tests.converters.test_export_torch import _init, _student
from tests.test_generate import cli_env

transformers = pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]
QUESTION = "What colour is the square?"
VIDEO_FRAMES, VIDEO_FPS = 37, 10.0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Checkpoint (with tokenizer), its export, the mp4, the JAX model and the exported model + processor."""
    root = tmp_path_factory.mktemp("processor")
    save_tiny_tokenizer(root / "tokenizer", 512)
    cfg = LiteFrameConfig(_student(), model_from_config(internvl3_tiny.get_config())).validate()
    save_liteframe(root / "ck", cfg, _init(cfg, with_llm=True, seed=5), stage="lma", tokenizer_dir=root / "tokenizer")
    export_liteframe(root / "ck", root / "exported", verbose=False)
    video = root / "clip.mp4"
    write_video(video, np.ascontiguousarray(moving_square_clip(VIDEO_FRAMES, 128, seed=3)[:, 16:112]), fps=VIDEO_FPS)
    jm = lf.load(root / "ck")
    _ = jm.tokenizer
    model = transformers.AutoModelForCausalLM.from_pretrained(root / "exported", trust_remote_code=True).eval()
    processor = transformers.AutoProcessor.from_pretrained(root / "exported", trust_remote_code=True)
    return dict(root=root, cfg=cfg, video=video, jax=jm, torch=model, processor=processor)


def _jax_inputs(jm, video, frames: int, start=None, end=None, system="default") -> tuple[np.ndarray, np.ndarray]:
    """(prompt ids (L,), normalized pixels (F, H, W, 3)) exactly as `python -m liteframe_jax.generate` builds them."""
    pixels = clip_pixels(jm, video_record(str(video), QUESTION, start, end), frames)
    ids = prompt_ids(jm.tokenizer, QUESTION, frames, prompt_layout(jm, pixels.shape[1:3]), system_message_arg(system))
    return ids, pixels


def _jax_answer_tokens(jm, ids, pixels, max_new_tokens: int) -> np.ndarray:
    """JAX greedy tokens up to and including the end token (what torch's generate returns when it stops there)."""
    eos = jm.end_token_id
    tokens = jm.generate(ids[None], pixels, max_new_tokens=max_new_tokens, eos_token_id=eos)[0]
    return tokens[:int(np.argmax(tokens == eos)) + 1] if (tokens == eos).any() else tokens


# ---------------------------------------------------------------------------------------------- contents
def test_export_carries_the_processor_and_its_settings_come_from_the_model(setup):
    out = setup["root"] / "exported"
    for name in (PROCESSOR_FILE, PROCESSOR_CONFIG, *PROCESSOR_MODULES):
        assert (out / name).is_file(), name
    for name, source in PROCESSOR_MODULES.items():  # our modules, copied unchanged
        assert (out / name).read_text() == (REPO / "liteframe_jax" / "data" / source).read_text()
    config = json.loads((out / PROCESSOR_CONFIG).read_text())
    assert config["auto_map"] == {"AutoProcessor": "processing_liteframe.LiteFrameProcessor"}
    p, jm = setup["processor"], setup["jax"]
    assert type(p).__name__ == "LiteFrameProcessor"
    assert (p.num_frames, tuple(p.image_size), p.frames_per_group, p.tokens_per_group) == \
        (8, jm.image_size, jm.frames_per_group, jm.tokens_per_group()) == (8, (112, 112), 4, 4)


def test_processor_save_pretrained_round_trip(setup, tmp_path):
    p = setup["processor"]
    p.save_pretrained(tmp_path / "saved")
    q = transformers.AutoProcessor.from_pretrained(tmp_path / "saved", trust_remote_code=True)
    assert (q.num_frames, q.image_size, q.frames_per_group, q.tokens_per_group, q.system_message) == \
        (p.num_frames, p.image_size, p.frames_per_group, p.tokens_per_group, p.system_message)
    a, b = p(str(setup["video"]), QUESTION), q(str(setup["video"]), QUESTION)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["pixel_values"], b["pixel_values"])


def test_no_processor_without_tokenizer_or_llm(setup, tmp_path):
    cfg = setup["cfg"]
    save_liteframe(tmp_path / "ck", cfg, _init(cfg, with_llm=True), stage="lma")  # no tokenizer files
    export_liteframe(tmp_path / "ck", tmp_path / "out", verbose=False)
    save_liteframe(tmp_path / "enc", cfg, _init(cfg, with_llm=False), stage="ctd",
                   tokenizer_dir=setup["root"] / "tokenizer")
    export_liteframe(tmp_path / "enc", tmp_path / "enc_out", verbose=False)
    for out in (tmp_path / "out", tmp_path / "enc_out"):
        assert not (out / PROCESSOR_CONFIG).exists() and not (out / PROCESSOR_FILE).exists()


# ---------------------------------------------------------------------------------------------- input parity
@pytest.mark.parametrize("frames,start,end,system", [
    (6, None, None, "default"),   # a short last group (Frame5-6)
    (8, None, None, "none"),      # no system turn
    (5, 0.5, 2.0, "Be brief."),   # a [start, end] span and a custom system message
    (48, None, None, "default"),  # more frames than the video: InternVL repeats frames
])
def test_file_inputs_match_jax(setup, frames, start, end, system, record_property):
    want_ids, want_pixels = _jax_inputs(setup["jax"], setup["video"], frames, start, end, system)
    got = setup["processor"](str(setup["video"]), QUESTION, num_frames=frames, start=start, end=end,
                             system_message=system)
    np.testing.assert_array_equal(got["input_ids"].numpy(), want_ids[None])
    np.testing.assert_array_equal(got["attention_mask"].numpy(), np.ones((1, len(want_ids))))
    pixels = got["pixel_values"].numpy()
    assert pixels.dtype == np.float32 and pixels.shape == (1, frames, 3, 112, 112)
    err = float(np.abs(pixels[0].transpose(0, 2, 3, 1) - want_pixels).max())
    record_property(f"processor_pixels_max_abs_err_{frames}f", err)
    np.testing.assert_allclose(pixels[0].transpose(0, 2, 3, 1), want_pixels, rtol=0, atol=1e-6)
    text = setup["processor"].tokenizer.decode(want_ids.tolist())
    groups = re.findall(r"(Frame[\d-]+): <img>((?:<IMG_CONTEXT>)+)</img>", text)
    spans = [(g * 4 + 1, min(g * 4 + 4, frames)) for g in range(-(-frames // 4))]
    assert [g[0] for g in groups] == [f"Frame{a}" if a == b else f"Frame{a}-{b}" for a, b in spans]
    assert all(len(g[1]) == 4 * len("<IMG_CONTEXT>") for g in groups)


def test_array_inputs_match_jax_sampling_resize_and_normalization(setup):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(11, 70, 90, 3), dtype=np.uint8)
    p = setup["processor"]
    got = p(frames, QUESTION, num_frames=6)
    want = normalize_frames(crop_resize(frames[segment_middle_indices(11, 6)], (112, 112)))
    np.testing.assert_allclose(got["pixel_values"][0].numpy().transpose(0, 2, 3, 1), want, rtol=0, atol=1e-6)
    assert torch.equal(p(torch.from_numpy(frames), QUESTION, num_frames=6)["pixel_values"], got["pixel_values"])
    ids, _ = _jax_inputs(setup["jax"], setup["video"], 6)
    np.testing.assert_array_equal(got["input_ids"].numpy()[0], ids)  # same prompt for the same frame count


def test_processor_errors(setup, tmp_path):
    p = setup["processor"]
    with pytest.raises(ValueError, match="question is empty"):
        p(str(setup["video"]), "  ")
    with pytest.raises(ValueError, match="uint8"):
        p(np.zeros((4, 8, 8, 3), np.float32), QUESTION)
    with pytest.raises(ValueError, match="need a video file"):
        p(np.zeros((4, 8, 8, 3), np.uint8), QUESTION, start=0, end=1)
    # the exported module's VideoReadError (a ValueError), a class of its own in transformers' module cache
    with pytest.raises(ValueError, match="does not exist") as missing:
        p(str(tmp_path / "missing.mp4"), QUESTION)
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="cannot open") as bad:
        p(str(tmp_path / "bad.mp4"), QUESTION)
    assert type(missing.value).__name__ == type(bad.value).__name__ == VideoReadError.__name__


def test_repository_processor_file_matches_the_exported_one(setup):
    """The class in converters/torch_modeling (imported with the repository's modules) builds the same inputs."""
    p = setup["processor"]
    local = LiteFrameProcessor(load_tokenizer(setup["root"] / "ck"), num_frames=6, image_size=p.image_size,
                               frames_per_group=p.frames_per_group, tokens_per_group=p.tokens_per_group)
    a, b = local(str(setup["video"]), QUESTION), p(str(setup["video"]), QUESTION, num_frames=6)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["pixel_values"], b["pixel_values"])


# ---------------------------------------------------------------------------------------------- answer parity
@pytest.mark.parametrize("frames", [6, 8])
def test_chat_gives_the_jax_greedy_answer(setup, frames):
    jm = setup["jax"]
    ids, pixels = _jax_inputs(jm, setup["video"], frames)
    want = _jax_answer_tokens(jm, ids, pixels, 12)
    text, tokens = setup["torch"].chat(setup["processor"], str(setup["video"]), QUESTION, max_new_tokens=12,
                                       num_frames=frames, return_tokens=True)
    np.testing.assert_array_equal(tokens.numpy(), want)
    assert text == jm.answer(pixels, QUESTION, max_new_tokens=12)
    assert len(set(want.tolist())) > 1  # a non-degenerate answer


_NO_JAX = textwrap.dedent("""
    import sys
    for name in ("jax", "jaxlib", "flax", "optax", "orbax", "liteframe_jax"):
        sys.modules[name] = None  # importing any of them now raises ImportError
    try:
        import jax  # noqa: F401
        raise SystemExit("jax is importable")
    except ImportError:
        pass
""")


def _run_without_jax(code: str, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _NO_JAX + code], cwd=root, capture_output=True, text=True,
                          timeout=300)


def test_processor_and_chat_work_without_jax(setup):
    root = setup["root"]
    code = textwrap.dedent(f"""
        import json, numpy as np
        from transformers import AutoModelForCausalLM, AutoProcessor
        p = AutoProcessor.from_pretrained({str(root / "exported")!r}, trust_remote_code=True)
        x = p({str(setup["video"])!r}, {QUESTION!r}, num_frames=6)
        np.savez({str(root / "nojax.npz")!r}, ids=x["input_ids"].numpy(), pixels=x["pixel_values"].numpy())
        m = AutoModelForCausalLM.from_pretrained({str(root / "exported")!r}, trust_remote_code=True)
        text, tokens = m.chat(p, {str(setup["video"])!r}, {QUESTION!r}, max_new_tokens=12, num_frames=6,
                              return_tokens=True)
        print(json.dumps(tokens.tolist()))
        assert not [n for n in sys.modules if n.split(".")[0] in ("jax", "flax") and sys.modules[n] is not None]
    """)
    r = _run_without_jax(code, root)
    assert r.returncode == 0, r.stderr[-3000:]
    ids, pixels = _jax_inputs(setup["jax"], setup["video"], 6)
    got = np.load(root / "nojax.npz")
    np.testing.assert_array_equal(got["ids"][0], ids)
    np.testing.assert_allclose(got["pixels"][0].transpose(0, 2, 3, 1), pixels, rtol=0, atol=1e-6)
    want = _jax_answer_tokens(setup["jax"], ids, pixels, 12)
    assert json.loads(r.stdout.strip().splitlines()[-1]) == want.tolist()


def _readme_snippet() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Export to PyTorch"):]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    snippet = next(b for b in blocks if "model.chat(" in b)
    assert len([line for line in snippet.splitlines() if line and not line.startswith("from ")]) == 3
    return snippet


def test_readme_three_lines_answer_like_the_generate_cli(setup):
    """The README block, run as written (paths substituted, JAX unimportable), prints what
    `python -m liteframe_jax.generate` prints for the same video and question, both at their defaults."""
    root, snippet = setup["root"], _readme_snippet()
    question = re.search(r'model\.chat\(processor, "video\.mp4", "([^"]+)"\)', snippet).group(1)
    snippet = snippet.replace('"OUT_DIR"', repr(str(root / "exported"))).replace('"video.mp4"',
                                                                                   repr(str(setup["video"])))
    r = _run_without_jax(snippet, root)
    assert r.returncode == 0, r.stderr[-3000:]
    cli = subprocess.run([sys.executable, "-m", "liteframe_jax.generate", "--checkpoint", str(root / "ck"),
                          "--video", str(setup["video"]), "--question", question], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env=cli_env(root))
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert cli.stdout.strip() and r.stdout.strip() == cli.stdout.strip()
