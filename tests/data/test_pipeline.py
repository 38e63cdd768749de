"""The CTD input pipeline: batch contract, determinism, splits, process sharding, resume, augmentation, file
sources and skipping of unreadable videos."""

import json
import os

import numpy as np
import pytest

from liteframe_jax.data.frames import moving_square_clip, normalize_frames
from liteframe_jax.data.pipeline import (DataConfig, DataError, build_dataset, crop_resize, load_examples,
                                         random_resized_crop_box, split_indices)
from liteframe_jax.data.sampling import segment_middle_indices
from liteframe_jax.data.synthetic import SyntheticVideoSpec, make_synthetic_video
from liteframe_jax.data.video import load_clip, write_video

T, SIZE = 4, (32, 32)
SYN = DataConfig(num_frames=T, image_size=SIZE, synthetic_videos=24, synthetic_size=32, eval_fraction=0.25)
AUG = SYN.replace(random_resized_crop_scale=(0.3, 0.6), hflip=True)


def take(ds, n):
    it = iter(ds)
    return [next(it) for _ in range(n)]


def epoch(ds):
    """All batches of a finite dataset, as {index: pixels}."""
    out = {}
    for b in ds:
        out.update(zip(b["index"].tolist(), b["pixels"]))
    return out


def reference_pixels(cfg, index):
    """Un-augmented synthetic clip `index` as the pipeline must deliver it."""
    frames = make_synthetic_video(index, SyntheticVideoSpec(num_frames=cfg.num_frames, size=cfg.synthetic_size)).frames
    return normalize_frames(crop_resize(frames, cfg.image_size))


# ---- config -------------------------------------------------------------------------------------------------

def test_config_validate_lists_every_problem():
    bad = DataConfig(source="s3", num_frames=0, image_size=(32,), sampling="uniform", eval_fraction=1.0,
                     random_resized_crop_scale=(0.8, 0.5), num_workers=-1)
    with pytest.raises(ValueError) as e:
        bad.validate()
    for field in ("source", "num_frames", "image_size", "sampling", "eval_fraction", "random_resized_crop_scale",
                  "num_workers"):
        assert field in str(e.value)
    with pytest.raises(ValueError, match="needs a path"):
        DataConfig(source="manifest").validate()


def test_config_dict_round_trip_and_unknown_keys():
    d = json.loads(json.dumps(AUG.to_dict()))
    assert DataConfig.from_dict(d) == AUG
    with pytest.raises(ValueError, match="unknown DataConfig field.*colour"):
        DataConfig.from_dict({**d, "colour": 1})


# ---- synthetic batches ----------------------------------------------------------------------------------------

def test_synthetic_batches_have_documented_shapes_dtypes_and_normalization():
    ds, skips = build_dataset(SYN, "train", batch_size=3, augment=False)
    b = take(ds, 1)[0]
    assert b["pixels"].shape == (3, T, *SIZE, 3) and b["pixels"].dtype == np.float32
    assert b["index"].shape == (3,) and b["index"].dtype == np.int64
    assert b["frame_indices"].shape == (3, T) and (b["frame_indices"] == -1).all()
    for i, index in enumerate(b["index"]):
        np.testing.assert_array_equal(b["pixels"][i], reference_pixels(SYN, int(index)))
    assert skips.count == 0


def test_batches_can_carry_uint8_frames_left_for_the_step_to_normalize():
    host = take(build_dataset(AUG, "train", 3)[0], 2)
    raw = take(build_dataset(AUG.replace(normalize_on_host=False), "train", 3)[0], 2)
    for h, r in zip(host, raw):
        assert r["pixels"].dtype == np.uint8 and r["pixels"].shape == h["pixels"].shape
        np.testing.assert_array_equal(r["index"], h["index"])  # the same clips, crops and flips
        np.testing.assert_array_equal(normalize_frames(r["pixels"].reshape(-1, *SIZE, 3)),
                                      h["pixels"].reshape(-1, *SIZE, 3))


def test_same_config_gives_same_batches_and_other_seed_differs():
    a = take(build_dataset(AUG, "train", 4)[0], 3)
    b = take(build_dataset(AUG, "train", 4)[0], 3)
    c = take(build_dataset(AUG.replace(seed=1), "train", 4)[0], 3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["index"], y["index"])
        np.testing.assert_array_equal(x["pixels"], y["pixels"])
    assert not all(np.array_equal(x["index"], z["index"]) for x, z in zip(a, c))


def test_epochs_are_reshuffled_and_cover_the_split():
    train = split_indices(SYN, "train")
    ds, _ = build_dataset(SYN.replace(num_epochs=2), "train", 1, augment=False)
    order = [int(b["index"][0]) for b in ds]
    first, second = order[:len(train)], order[len(train):]
    assert sorted(first) == sorted(second) == train.tolist()
    assert first != second and first != sorted(first)


# ---- splits and process sharding -------------------------------------------------------------------------------

def test_train_and_eval_splits_are_disjoint_stable_and_cover_everything():
    train, held = split_indices(SYN, "train"), split_indices(SYN, "eval")
    assert len(held) > 0 and not set(train) & set(held)
    assert sorted([*train, *held]) == list(range(SYN.synthetic_videos))
    # stable: independent of the shuffle seed and of how many videos follow
    np.testing.assert_array_equal(split_indices(SYN.replace(seed=7), "eval"), held)
    more = split_indices(SYN.replace(synthetic_videos=48), "eval")
    np.testing.assert_array_equal(more[more < SYN.synthetic_videos], held)
    ds, _ = build_dataset(SYN.replace(num_epochs=1), "eval", 1)
    assert [int(b["index"][0]) for b in ds] == held.tolist()  # eval: every held-out video, in order


def test_process_slices_are_disjoint_and_together_cover_the_epoch():
    cfg = SYN.replace(num_epochs=1)
    seen = []
    for p in range(3):
        ds, _ = build_dataset(cfg, "train", 1, process_index=p, process_count=3)
        seen.append([int(b["index"][0]) for b in ds])
    flat = [i for s in seen for i in s]
    assert len(flat) == len(set(flat))
    assert sorted(flat) == split_indices(cfg, "train").tolist()
    # the same step of different processes never holds the same example
    steps = [take(build_dataset(SYN, "train", 4, process_index=p, process_count=2)[0], 5) for p in range(2)]
    for a, b in zip(*steps):
        assert not set(a["index"].tolist()) & set(b["index"].tolist())


# ---- resume -----------------------------------------------------------------------------------------------------

def assert_resumes_exactly(cfg, k=3, m=3):
    ds, _ = build_dataset(cfg, "train", 4)
    it = iter(ds)
    for _ in range(k):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores must survive JSON
    expected = [next(it) for _ in range(m)]
    fresh, _ = build_dataset(cfg, "train", 4)
    resumed = iter(fresh)
    resumed.set_state(state)
    got = [next(resumed) for _ in range(m)]
    for x, y in zip(expected, got):
        np.testing.assert_array_equal(x["index"], y["index"])
        np.testing.assert_array_equal(x["pixels"], y["pixels"])
    for i in (it, resumed):
        i.close()
    return expected


def test_iterator_state_round_trip_in_process():
    assert_resumes_exactly(AUG, k=7)  # crosses an epoch boundary (18 train videos, 4 per batch)


def test_iterator_state_round_trip_with_worker_processes_matches_in_process():
    from absl import flags
    if not flags.FLAGS.is_parsed():
        flags.FLAGS(["test"])
    with_workers = assert_resumes_exactly(AUG.replace(num_workers=2), k=2, m=2)
    in_process = take(build_dataset(AUG, "train", 4)[0], 4)[2:]
    for x, y in zip(with_workers, in_process):
        np.testing.assert_array_equal(x["pixels"], y["pixels"])


# ---- augmentation -----------------------------------------------------------------------------------------------

def test_random_resized_crop_box_respects_scale_and_bounds():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x0, y0, x1, y1 = random_resized_crop_box(48, 64, (0.3, 0.6), rng)
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 48
        assert 0.25 <= (x1 - x0) * (y1 - y0) / (48 * 64) <= 0.65


def test_crop_and_flip_are_shared_by_all_frames_and_change_with_the_seed(tmp_path):
    frame = moving_square_clip(1, 64, seed=3)[0]
    frame[:, :8] = 255  # an asymmetric picture, so flips and crops show
    write_video(tmp_path / "still.mp4", np.repeat(frame[None], 12, axis=0), fps=8, codec="libx264rgb")
    (tmp_path / "m.jsonl").write_text('{"video": "still.mp4"}\n')
    cfg = DataConfig(source="manifest", path=str(tmp_path / "m.jsonl"), num_frames=6, image_size=SIZE,
                     eval_fraction=0.0, random_resized_crop_scale=(0.3, 0.6), hflip=True, num_epochs=6)
    plain = normalize_frames(crop_resize(np.repeat(frame[None], 6, axis=0), SIZE))
    clips = [b["pixels"][0] for b in build_dataset(cfg, "train", 1)[0]]  # 6 epochs of the one video
    for clip in clips:
        for t in range(1, 6):
            np.testing.assert_array_equal(clip[t], clip[0])  # one crop and flip per clip
        assert not np.array_equal(clip, plain)
    assert len({c.tobytes() for c in clips}) == 6  # a new draw per epoch
    other = [b["pixels"][0] for b in build_dataset(cfg.replace(seed=5), "train", 1)[0]]
    assert all(not np.array_equal(a, b) for a, b in zip(clips, other))
    # no augmentation when not asked for, and never for eval
    np.testing.assert_array_equal(take(build_dataset(cfg, "train", 1, augment=False)[0], 1)[0]["pixels"][0], plain)
    ev, _ = build_dataset(cfg.replace(eval_fraction=0.999), "eval", 1)
    np.testing.assert_array_equal(take(ev, 1)[0]["pixels"][0], plain)


def test_hflip_alone_mirrors_some_clips_and_leaves_the_others(tmp_path):
    frame = moving_square_clip(1, 32, seed=1)[0]
    write_video(tmp_path / "still.mp4", np.repeat(frame[None], 8, axis=0), fps=8, codec="libx264rgb")
    (tmp_path / "m.jsonl").write_text('{"video": "still.mp4"}\n')
    cfg = DataConfig(source="manifest", path=str(tmp_path / "m.jsonl"), num_frames=2, image_size=SIZE,
                     eval_fraction=0.0, hflip=True, num_epochs=8)
    plain = normalize_frames(np.repeat(frame[None], 2, axis=0))
    flipped = [bool(np.array_equal(b["pixels"][0], plain[:, :, ::-1])) for b in build_dataset(cfg, "train", 1)[0]]
    unflipped = [bool(np.array_equal(b["pixels"][0], plain)) for b in build_dataset(cfg, "train", 1)[0]]
    assert all(f != u for f, u in zip(flipped, unflipped)) and 0 < sum(flipped) < 8


def test_synthetic_augmentation_changes_with_seed_but_eval_is_plain():
    a = epoch(build_dataset(AUG.replace(num_epochs=1), "train", 2)[0])
    b = epoch(build_dataset(AUG.replace(num_epochs=1, seed=3), "train", 2)[0])
    assert a.keys() == b.keys()
    assert sum(not np.array_equal(a[i], b[i]) for i in a) >= len(a) - 1
    ev = epoch(build_dataset(AUG.replace(num_epochs=1), "eval", 1)[0])
    for i, pixels in ev.items():
        np.testing.assert_array_equal(pixels, reference_pixels(AUG, i))


# ---- files: manifest and folder ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Four small real videos (8-16 frames, 64x64, 8 fps) in <root>/clips/, and the root."""
    root = tmp_path_factory.mktemp("videos")
    (root / "clips").mkdir()
    paths = []
    for i, n in enumerate((8, 12, 16, 10)):
        p = root / "clips" / f"v{i}.mp4"
        write_video(p, moving_square_clip(n, 64, seed=i), fps=8)
        paths.append(p)
    return root, paths


def file_cfg(path, **kw):
    return DataConfig(source="manifest", path=str(path), num_frames=T, image_size=SIZE, eval_fraction=0.0,
                      shuffle=False, num_epochs=1, **kw)


def test_jsonl_manifest_with_relative_paths_and_spans_decodes(videos):
    root, paths = videos
    lines = [{"video": "clips/v0.mp4"}, {"video": str(paths[2]), "start": 0.5, "end": 1.5}, {"video": "clips/v1.mp4"}]
    (root / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    ds, skips = build_dataset(file_cfg(root / "m.jsonl"), "train", 3)
    (b,) = list(ds)
    assert b["pixels"].shape == (3, T, *SIZE, 3) and skips.count == 0
    np.testing.assert_array_equal(b["index"], [0, 1, 2])
    frames, idx = load_clip(paths[0], T, size=SIZE)  # the teacher's preprocessing, exactly
    np.testing.assert_array_equal(b["pixels"][0], normalize_frames(frames))
    np.testing.assert_array_equal(b["frame_indices"][0], idx)
    np.testing.assert_array_equal(b["frame_indices"][1], segment_middle_indices(16, T, fps=8, bound=(0.5, 1.5)))


def test_csv_manifest_and_folder_sources(videos):
    root, paths = videos
    (root / "m.csv").write_text("video,start,end\nclips/v3.mp4,,\nclips/v1.mp4,0.25,1.0\n")
    ds, _ = build_dataset(file_cfg(root / "m.csv"), "train", 2)
    (b,) = list(ds)
    assert b["pixels"].shape == (2, T, *SIZE, 3)
    np.testing.assert_array_equal(b["frame_indices"][1], segment_middle_indices(12, T, fps=8, bound=(0.25, 1.0)))
    (root / "clips" / "notes.txt").write_text("not a video")
    folder = file_cfg(root / "clips").replace(source="folder")
    assert load_examples(folder).video_ids == ("v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4")
    ds, _ = build_dataset(folder, "train", 4)
    (b,) = list(ds)
    assert b["pixels"].shape == (4, T, *SIZE, 3)


def test_fps_sampling_pads_short_clips_by_repeating_the_last_frame(videos):
    root, paths = videos
    (root / "fps.jsonl").write_text('{"video": "clips/v2.mp4"}\n')  # 16 frames at 8 fps = 2 s
    ds, _ = build_dataset(file_cfg(root / "fps.jsonl", sampling="fps", fps=2.0).replace(num_frames=6), "train", 1)
    (b,) = list(ds)
    np.testing.assert_array_equal(b["frame_indices"][0], [0, 4, 8, 12, 12, 12])
    np.testing.assert_array_equal(b["pixels"][0, 5], b["pixels"][0, 3])


@pytest.mark.parametrize("name, text, message", [
    ("bad.jsonl", '{"video": "a.mp4"}\n{"video": "b.mp4"\n', "line 2: malformed JSON"),
    ("bad.jsonl", '{"video": "a.mp4"}\n\n{"path": "b.mp4"}\n', "line 3: needs a non-empty string 'video'"),
    ("bad.jsonl", '{"video": "a.mp4", "start": 3, "end": 1}\n', "line 1: end"),
    ("bad.csv", "path,start\na.mp4,1\n", "'video' column"),
    ("bad.csv", "video,start,end\na.mp4,,\nb.mp4,soon,\n", "line 3: start must be a number"),
])
def test_bad_manifest_lines_fail_at_construction_naming_the_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=message):
        build_dataset(file_cfg(tmp_path / name), "train", 1)


def test_missing_manifest_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        build_dataset(file_cfg(tmp_path / "nope.jsonl"), "train", 1)
    with pytest.raises(DataError, match="lists no videos"):
        build_dataset(file_cfg(tmp_path).replace(source="folder"), "train", 1)


# ---- unreadable videos ------------------------------------------------------------------------------------------

@pytest.fixture
def bad_files(tmp_path, videos):
    """A missing file, a truncated video, a text file named .mp4 and a zero-byte file."""
    data = videos[1][2].read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    (tmp_path / "empty.mp4").write_bytes(b"")
    return [tmp_path / n for n in ("missing.mp4", "truncated.mp4", "text.mp4", "empty.mp4")]


def write_manifest(path, files):
    path.write_text("".join(json.dumps({"video": str(f)}) + "\n" for f in files))
    return path


def test_unreadable_videos_are_skipped_counted_and_named(tmp_path, videos, bad_files):
    good = videos[1]
    manifest = write_manifest(tmp_path / "m.jsonl", bad_files + good)  # failures first: training still starts
    ds, skips = build_dataset(file_cfg(manifest), "train", 2)
    batches = list(ds)
    assert len(batches) == 2
    assert sorted(i for b in batches for i in b["index"].tolist()) == [4, 5, 6, 7]
    assert skips.count == 4 and skips.succeeded == 4
    for f in bad_files:
        assert any(e.startswith(f"{f}: ") for e in skips.examples), skips.examples
    assert "file not found" in skips.examples[0] and "empty" in skips.examples[3]


def test_a_dataset_where_nothing_decodes_stops_with_an_error_naming_examples(tmp_path, bad_files):
    manifest = write_manifest(tmp_path / "m.jsonl", bad_files)
    ds, _ = build_dataset(file_cfg(manifest).replace(num_epochs=3), "train", 2)
    with pytest.raises(DataError, match="no example could be read") as e:
        next(iter(ds))
    for f in bad_files:
        assert str(f) in str(e.value)


# ---- file names and manifests that are not UTF-8 ----------------------------------------------------------------

def test_a_folder_with_non_utf8_file_names_trains_and_names_them_printably(tmp_path, videos):
    folder = tmp_path / "folder"
    folder.mkdir()
    good = os.path.join(os.fsencode(folder), b"clip\xff.mp4")
    with open(good, "wb") as f:
        f.write(videos[1][1].read_bytes())
    with open(os.path.join(os.fsencode(folder), b"bad\xfe.mp4"), "wb") as f:
        f.write(b"not a video")
    cfg = DataConfig(source="folder", path=str(folder), num_frames=T, image_size=SIZE, eval_fraction=0.5,
                     shuffle=False, num_epochs=1)
    examples = load_examples(cfg)
    assert len(examples) == 2 and {os.fsencode(p) for p in examples.paths} >= {good}
    ds, skips = build_dataset(cfg.replace(eval_fraction=0.0), "train", 1)
    assert len(list(ds)) == 1 and skips.count == 1
    assert "bad\\xfe.mp4" in skips.examples[0]
    skips.summary().encode("utf-8")  # printable: no surrogates left


def test_a_manifest_that_is_not_utf8_names_the_line(tmp_path, videos):
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(json.dumps({"video": str(videos[1][0])}).encode() + b'\n{"video": "caf\xe9.mp4"}\n')
    with pytest.raises(DataError, match=r"m.jsonl: line 2: not valid UTF-8"):
        load_examples(file_cfg(manifest))


# ---- worker processes -------------------------------------------------------------------------------------------

def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_loader_workers_exit_when_the_training_process_is_killed():
    """kill -9 of the training process: its grain workers and multiprocessing helpers follow it (Linux /proc)."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    code = ("from liteframe_jax.data.pipeline import DataConfig, build_dataset\n"
            "cfg = DataConfig(source='synthetic', num_frames=2, image_size=(32, 32), synthetic_videos=64, "
            "num_workers=2, eval_fraction=0.0)\n"
            "ds, _ = build_dataset(cfg, 'train', 2)\n"
            "it = iter(ds); next(it)\n"
            "print('ready', flush=True)\n"
            "import time; time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    workers: set[int] = set()
    try:
        assert proc.stdout.readline().strip() == "ready"
        workers = _children(proc.pid)
        assert len(workers) >= 2, workers  # two grain workers (+ multiprocessing's helpers)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not [w for w in workers if _alive(w)], "orphaned loader processes"
    finally:
        proc.kill()
        for w in workers:
            try:
                os.kill(w, signal.SIGKILL)
            except OSError:
                pass


def test_events_source_gives_strided_windows_of_the_long_clips_fixed_per_video():
    from liteframe_jax.data.pipeline import EVENT_CLIP_STRIDE, event_clip
    from liteframe_jax.data.synthetic_events import EventVideoSpec, make_event_video

    clip = event_clip(5, 4, 112)
    full = make_event_video(5, EventVideoSpec(size=112)).frames
    starts = [s for s in range(len(full)) if np.array_equal(full[s:s + 7:EVENT_CLIP_STRIDE], clip)]
    assert clip.shape == (4, 112, 112, 3) and starts  # four frames, every other frame of the long clip
    np.testing.assert_array_equal(event_clip(5, 4, 112), clip)  # the same window every time (target caches)
    assert not np.array_equal(event_clip(6, 4, 112), clip)
    with pytest.raises(ValueError, match="synthetic_kind must be one of"):
        DataConfig(synthetic_kind="clips").validate()
    with pytest.raises(ValueError, match="does not fit in an events clip"):
        DataConfig(synthetic_kind="events", num_frames=100).validate()
