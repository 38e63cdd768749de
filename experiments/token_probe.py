"""Linear probes on a teacher's visual tokens: is what the events benchmark asks about in the tokens the LLM gets?

    python -m experiments.token_probe --checkpoint DIR [--train_clips 600] [--test_clips 300] [--out FILE.json]

For clips of the embedded `events` benchmark (default spec, train clips 0.., held-out clips from
video_qa.TEST_INDEX_OFFSET) it encodes single frames with the checkpoint's vision tower and projector
(`encode_frames`: the LLM-space tokens) and fits a ridge-regression classifier (one-vs-rest least squares on
standardized features; `--ridge`) on the train clips' features, then reports held-out accuracy with its 95% Wilson
interval and chance:
  persistent_color / persistent_shape  the always-visible object, from its quadrant's token(s) in a frame without
                                       events or flashes;
  event_color / event_shape            a brief one-off object, from its quadrant's token(s) in a frame inside its
                                       appearance;
  event_vs_empty                       that quadrant's token(s) against an empty quadrant's in the same frame.
A quadrant's feature is the mean of the tokens over that quarter of the frame's token grid (one token at 2 x 2).
High probe accuracy with a low answer accuracy (experiments.quickstart, liteframe_jax.evaluate) means the tokens
carry the answer and the LLM does not read it.
--wap KT,KH,KW adds, for each WAP location (pre_shuffle, post_shuffle, post_projector), persistent_color@LOCATION
and persistent_shape@LOCATION: the same probes on the LLM tokens of a clip of KT copies of that frame pooled by
WAP with that window (all of them, flattened): what post-hoc WAP, the student's target, leaves of the object.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from absl import flags

from liteframe_jax.cli import error as cli_error, run

PROBES = ("persistent_color", "persistent_shape", "event_color", "event_shape", "event_vs_empty")
_FRAME_SIZE = 112  # the events benchmark's default clip size, in which boxes are given


def quadrant(box, size: int = _FRAME_SIZE) -> int:
    """0..3 (row-major) of a box's centre in a size x size frame."""
    x0, y0, x1, y1 = box
    return int((y0 + y1) / 2 >= size / 2) * 2 + int((x0 + x1) / 2 >= size / 2)


def quadrant_features(tokens: np.ndarray, quadrants: np.ndarray) -> np.ndarray:
    """tokens (N, g*g, D) of N frames (a g x g row-major grid, g even), quadrants (N,) -> (N, D): the mean token of
    each frame's asked quadrant."""
    n, count, dim = tokens.shape
    g = math.isqrt(count)
    if g * g != count or g % 2:
        raise ValueError(f"need an even square grid of tokens per frame, got {count}")
    grid = tokens.reshape(n, 2, g // 2, 2, g // 2, dim)  # (N, row half, rows, column half, columns, D)
    rows, cols = quadrants // 2, quadrants % 2
    return grid[np.arange(n), rows, :, cols, :, :].mean(axis=(1, 2))


def probe_frames(indices, spec):
    """For each clip: (a frame without events or flashes, a frame inside its first one-off object's appearance)
    as uint8 (H, W, 3) at the clip's size, and the labels and quadrants of `PROBES`."""
    from liteframe_jax.data.synthetic import PALETTE, SHAPES
    from liteframe_jax.data.synthetic_events import make_event_video

    colors = list(PALETTE)
    calm, busy, rows = [], [], []
    for i in indices:
        v = make_event_video(i, spec)
        shown = np.zeros(spec.num_frames, bool)
        for e in (*v.events, *v.flashes):
            shown[e.start:e.end] = True
        free = np.flatnonzero(~shown)
        event = v.singles[0]
        inside = [t for t in event.frames if not any(f.start <= t < f.end for f in v.flashes)]
        if not len(free) or not inside:
            continue
        calm.append(v.frames[int(free[0])])
        busy.append(v.frames[inside[0]])
        q_event, q_persistent = quadrant(event.box, spec.size), quadrant(v.persistent.box, spec.size)
        rows.append({"persistent_q": q_persistent, "event_q": q_event,
                     "empty_q": next(q for q in range(4) if q not in (q_event, q_persistent)),
                     "persistent_color": colors.index(v.persistent.color),
                     "persistent_shape": SHAPES.index(v.persistent.shape),
                     "event_color": colors.index(event.color), "event_shape": SHAPES.index(event.shape)})
    return np.stack(calm), np.stack(busy), rows


def encode(model, frames: np.ndarray, batch: int = 64) -> np.ndarray:
    """uint8 frames (N, H0, W0, 3) -> LLM-space tokens (N, tokens per frame, D) float32."""
    from liteframe_jax.data.frames import normalize_frames
    from liteframe_jax.data.pipeline import crop_resize

    out = []
    for k in range(0, len(frames), batch):
        pixels = normalize_frames(crop_resize(frames[k:k + batch], tuple(model.image_size)))
        out.append(np.asarray(model.encode_frames(pixels), np.float32).reshape(len(pixels), -1,
                                                                               model.llm_config.text.hidden_size))
    return np.concatenate(out)


def probe_features(model, indices, spec) -> dict:
    """{probe: (features (N, D), labels (N,), classes)} for the clips `indices`."""
    calm, busy, rows = probe_frames(indices, spec)
    calm_tokens, busy_tokens = encode(model, calm), encode(model, busy)
    col = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    persistent = quadrant_features(calm_tokens, col["persistent_q"])
    event = quadrant_features(busy_tokens, col["event_q"])
    empty = quadrant_features(busy_tokens, col["empty_q"])
    return {"persistent_color": (persistent, col["persistent_color"], 8),
            "persistent_shape": (persistent, col["persistent_shape"], 3),
            "event_color": (event, col["event_color"], 8), "event_shape": (event, col["event_shape"], 3),
            "event_vs_empty": (np.concatenate([event, empty]),
                               np.r_[np.ones(len(event), int), np.zeros(len(empty), int)], 2)}


def wap_probe_features(model, indices, spec, window: tuple[int, int, int]) -> dict:
    """{f"persistent_{color,shape}@{location}": (features (N, D'), labels (N,), classes)}: the LLM tokens of a clip
    of window[0] copies of each clip's calm frame, WAP-pooled at each location (flattened)."""
    import jax.numpy as jnp

    from liteframe_jax.compression.teacher_targets import targets_to_llm_tokens, teacher_targets
    from liteframe_jax.compression.wap import LOCATIONS, WAPConfig
    from liteframe_jax.data.frames import normalize_frames
    from liteframe_jax.data.pipeline import crop_resize

    calm, _, rows = probe_frames(indices, spec)
    pixels = jnp.asarray(normalize_frames(crop_resize(calm, tuple(model.image_size))))
    clips = jnp.repeat(pixels[:, None], window[0], axis=1)  # (N, KT, H, W, 3): one temporal window
    out = {}
    for location in LOCATIONS:
        wap = WAPConfig(window=window, location=location).validate()
        tokens = targets_to_llm_tokens(model.config, model.params,
                                       teacher_targets(model.config, model.params, clips, wap), wap)
        x = np.asarray(tokens, np.float32).reshape(len(calm), -1)
        out[f"persistent_color@{location}"] = (x, np.array([r["persistent_color"] for r in rows]), 8)
        out[f"persistent_shape@{location}"] = (x, np.array([r["persistent_shape"] for r in rows]), 3)
    return out


def ridge_probe(x_train, y_train, x_test, classes: int, ridge: float) -> np.ndarray:
    """Predicted classes (N_test,) of a one-vs-rest least-squares classifier on standardized features (float64)."""
    x_train, x_test = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    a = np.c_[(x_train - mean) / std, np.ones(len(x_train))]
    targets = np.eye(classes)[y_train] * 2 - 1
    w = np.linalg.solve(a.T @ a + ridge * len(a) * np.eye(a.shape[1]), a.T @ targets)
    return np.argmax(np.c_[(x_test - mean) / std, np.ones(len(x_test))] @ w, axis=1)


def main(argv):
    del argv
    f = flags.FLAGS
    if f.train_clips < 10 or f.test_clips < 10 or f.ridge <= 0:
        return cli_error(f"need --train_clips and --test_clips >= 10 and --ridge > 0, got {f.train_clips}, "
                         f"{f.test_clips}, {f.ridge}")
    if not Path(f.checkpoint).is_dir():
        return cli_error(f"--checkpoint {f.checkpoint} is not a directory")
    try:
        window = tuple(int(k) for k in f.wap.split(",")) if f.wap else ()
    except ValueError:
        window = (0,)
    if window and (len(window) != 3 or min(window) < 1):
        return cli_error(f"--wap must be three positive integers KT,KH,KW, got {f.wap!r}")
    import liteframe_jax as lf
    from liteframe_jax.data.synthetic_events import EventVideoSpec
    from liteframe_jax.data.video_qa import TEST_INDEX_OFFSET
    from liteframe_jax.evaluate import wilson

    model = lf.load(f.checkpoint)
    if model.frames_per_group != 1:
        return cli_error("--checkpoint must be a teacher (one token group per frame), not a LiteFrame student")
    spec = EventVideoSpec(seed=f.seed)
    print(f"[token_probe] encoding {f.train_clips} train and {f.test_clips} held-out clips", flush=True)
    held_out = range(TEST_INDEX_OFFSET, TEST_INDEX_OFFSET + f.test_clips)
    train, test = probe_features(model, range(f.train_clips), spec), probe_features(model, held_out, spec)
    if window:
        print(f"[token_probe] pooling with WAP window {window} at every location", flush=True)
        train.update(wap_probe_features(model, range(f.train_clips), spec, window))
        test.update(wap_probe_features(model, held_out, spec, window))
    results = {}
    width = max(map(len, train))
    for name in train:
        x, y, classes = train[name]
        xt, yt, _ = test[name]
        correct = int(np.sum(ridge_probe(x, y, xt, classes, f.ridge) == yt))
        lo, hi = wilson(correct, len(yt))
        results[name] = {"accuracy": correct / len(yt), "n": len(yt), "ci95": [lo, hi],
                         "chance": float(np.max(np.bincount(yt)) / len(yt)) if name == "event_vs_empty"
                         else 1 / classes, "train_n": len(y)}
        print(f"[token_probe] {name:{width}s} {correct / len(yt):.3f} [{lo:.3f}, {hi:.3f}] of {len(yt)} held-out "
              f"(chance {results[name]['chance']:.3f})", flush=True)
    if f.out:
        Path(f.out).write_text(json.dumps({"checkpoint": f.checkpoint, "seed": f.seed, "ridge": f.ridge,
                                           "probes": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    flags.DEFINE_string("checkpoint", None, "Teacher checkpoint (InternVL layout, e.g. experiments/assets/"
                        "tiny_teacher or the DIR/model of a configs/teacher_pretrain.py run).", required=True)
    flags.DEFINE_integer("train_clips", 600, "Clips the probes are fitted on.")
    flags.DEFINE_integer("test_clips", 300, "Held-out clips the probes are scored on.")
    flags.DEFINE_integer("seed", 0, "Seed of the events benchmark's clips.")
    flags.DEFINE_float("ridge", 1e-2, "Ridge penalty (times the number of train rows).")
    flags.DEFINE_string("out", None, "Write the results as JSON here.")
    flags.DEFINE_string("wap", "", "KT,KH,KW (e.g. 2,2,2, the tiny demo's window): also probe the persistent object "
                        "in WAP-pooled tokens at every WAP location.")
    run(main)
