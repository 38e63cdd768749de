"""QA frame stores (LMA): round trip per frame count, one stored clip per distinct clip, atomic extraction,
refusal of stores that do not match the records or settings, and QA batches from the store equal to decoding."""

import json
import os

import numpy as np
import pytest

from liteframe_jax.data import extract as extract_module
from liteframe_jax.data.extract import extract_frame_store, extract_qa_frame_stores
from liteframe_jax.data.frame_store import FrameStore, FrameStoreError, StoredSkip
from liteframe_jax.data.frames import moving_square_clip
from liteframe_jax.data.pipeline import DataConfig, DataError, build_dataset
from liteframe_jax.data.qa_pipeline import PromptLayout, QADataConfig, build_qa_dataset, record_clip
from liteframe_jax.data.qa_store import qa_clips, store_path, stored_clips
from liteframe_jax.data.tokenizer import load_tokenizer, save_tiny_tokenizer
from liteframe_jax.data.video import write_video
from liteframe_jax.data.video_qa import QARecord, synthetic_spec, synthetic_splits

QA = QADataConfig(num_frames=4, image_size=(24, 32), max_length=160, system_message=None, seed=1)
FRAMES = (4, 6)


def ask(video, n, **kw):
    return QARecord(video=str(video), question=f"What happens {n}?", answer=f"answer {n}", id=f"{video}:{n}", **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(root, train records, eval records, tokenizer): synthetic and real videos, several questions per clip, a
    span, a broken and a missing file; eval reuses a train clip."""
    root = tmp_path_factory.mktemp("qa_store")
    for i, (n, size) in enumerate(((12, 40), (20, 32))):
        write_video(root / f"v{i}.mp4", moving_square_clip(n, size, seed=i), fps=8)
    (root / "broken.mp4").write_text("not a video")
    synth_train, synth_eval = synthetic_splits(synthetic_spec("shapes", num_frames=16, size=32), 2, 1)
    train = [ask(root / "v0.mp4", 0), ask(root / "v1.mp4", 1), ask(root / "v0.mp4", 2),
             ask(root / "v1.mp4", 3, start=0.5, end=2.0), ask(root / "broken.mp4", 4), ask(root / "gone.mp4", 5),
             *synth_train[:6]]
    evaluate = [ask(root / "v1.mp4", 6), *synth_eval[:3]]
    save_tiny_tokenizer(root / "tok")
    return root, train, evaluate, load_tokenizer(root / "tok")


@pytest.fixture(scope="module")
def store(data, tmp_path_factory):
    _, train, evaluate, _ = data
    out = tmp_path_factory.mktemp("stores") / "s"
    result = extract_qa_frame_stores([train, evaluate], QA, FRAMES, str(out), progress=False)
    return out, result


def test_round_trip_stores_each_distinct_clip_once_per_frame_count(data, store):
    _, train, evaluate, _ = data
    out, result = store
    clips = qa_clips(train, evaluate)
    # v0, v1, v1 with a span, broken, gone, 2 synthetic train videos, 1 synthetic eval video (v1 again in eval)
    assert len(clips) == result["clips"] == 8 and result["records"] == len(train) + len(evaluate)
    assert sorted(os.listdir(out)) == ["frames_4", "frames_6", "qa_stores.json"]
    assert json.loads((out / "qa_stores.json").read_text())["num_frames"] == [4, 6]
    for t in FRAMES:
        assert (result["per_frames"][t]["stored"], result["per_frames"][t]["skipped"]) == (6, 2)
        s = FrameStore(store_path(out, t))
        assert len(s) == 8 and s.num_frames == t
        for k, record in enumerate(clips.records):
            if "broken" in record.video or "gone" in record.video:
                with pytest.raises(StoredSkip):
                    s.read(k)
                continue
            frames, idx = s.read(k)
            want_frames, want_idx = record_clip(record, t)
            np.testing.assert_array_equal(frames, want_frames)
            np.testing.assert_array_equal(idx, want_idx)


def batches(records, tok, qa, n, train=True, store=None):
    ds, skips = build_qa_dataset(records, tok, qa, PromptLayout(3), 2, train=train, store=store)
    it = iter(ds)
    return [next(it) for _ in range(n)], skips


def assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.mark.parametrize("frame_size", ["native", "config"])
def test_batches_from_the_store_equal_batches_from_the_videos(data, store, tmp_path, frame_size):
    _, train, evaluate, tok = data
    out = store[0]
    if frame_size == "config":
        out = tmp_path / "resized"
        extract_qa_frame_stores([train, evaluate], QA, FRAMES, str(out), frame_size="config", progress=False)
    clips = qa_clips(train, evaluate)
    for t in FRAMES:
        qa = QA.replace(num_frames=t)
        for records, train_split, n in ((train, True, 6), (evaluate, False, 2)):  # 6 batches: into the 2nd epoch
            from_videos, skips_v = batches(records, tok, qa, n, train_split)
            from_store, skips_s = batches(records, tok, qa, n, train_split, stored_clips(out, clips, records, qa))
            assert_same(from_videos, from_store)
            assert skips_v.examples == skips_s.examples  # the same records skipped, with the same reasons
    skipped = batches(train, tok, QA, 6, True, stored_clips(out, clips, train, QA))[1].examples
    assert any(e.endswith("file not found") for e in skipped) and any("broken.mp4" in e for e in skipped)


@pytest.mark.parametrize("change, message", [
    ({"num_frames": 8}, r"holds clips of \[4, 6\] frames, not 8"),
    ({"sampling": "fps", "fps": 2.0}, 'qa.sampling: store has "segment", expected "fps"'),
])
def test_other_settings_are_refused(data, store, change, message):
    _, train, evaluate, _ = data
    with pytest.raises(DataError, match=message):
        stored_clips(store[0], qa_clips(train, evaluate), train, QA.replace(**change))


def test_other_records_a_resized_store_at_another_size_and_changed_videos_are_refused(data, store, tmp_path):
    root, train, evaluate, _ = data
    out = store[0]
    other = [r for r in train if "v0" not in r.video]  # another train file
    with pytest.raises(DataError, match=r"does not match the QA data at 4 frames \(re-extract it\): "
                                        r"qa.num_clips: store has 8, expected 7; qa.clips_sha256"):
        stored_clips(out, qa_clips(other, evaluate), other, QA)
    edited = train[:2] + train[3:]  # a question removed whose clip another question shares: the clips are the same
    stored_clips(out, qa_clips(edited, evaluate), edited, QA)
    with pytest.raises(DataError, match="qa.clips_sha256: store has"):
        stored_clips(out, qa_clips(evaluate, train), train, QA)  # same clips, other order
    extract_qa_frame_stores([train, evaluate], QA, [4], str(tmp_path / "r"), frame_size="config", progress=False)
    with pytest.raises(DataError, match=r"qa.image_size: store has \[24, 32\], expected \[32, 32\]"):
        stored_clips(tmp_path / "r", qa_clips(train, evaluate), train, QA.replace(image_size=(32, 32)))
    video = root / "v1.mp4"
    st = os.stat(video)
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        with pytest.raises(DataError, match=r"other versions of 1 source video\(s\).*v1\.mp4; re-extract"):
            stored_clips(out, qa_clips(train, evaluate), train, QA)
    finally:
        os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_missing_foreign_and_ctd_stores_are_refused(data, tmp_path):
    _, train, evaluate, _ = data
    clips = qa_clips(train, evaluate)
    with pytest.raises(DataError, match="data.frame_store: no frame store at"):
        stored_clips(tmp_path / "missing", clips, train, QA)
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="is not a QA frame store directory: qa_stores.json is missing"):
        stored_clips(tmp_path / "other", clips, train, QA)
    extract_frame_store(DataConfig(synthetic_videos=2, num_frames=4), str(tmp_path / "ctd"), progress=False)
    with pytest.raises(DataError, match="is a single frame store .*extract one with"):
        stored_clips(tmp_path / "ctd", clips, train, QA)
    qa_store = tmp_path / "qa"
    extract_qa_frame_stores([train, evaluate], QA, [4], str(qa_store), progress=False)
    with pytest.raises(DataError, match="is a QA frame store directory .*CTD reads a single frame store"):
        build_dataset(DataConfig(synthetic_videos=2, num_frames=4, frame_store=str(qa_store)), "train", 1)


def test_an_interrupted_extraction_leaves_nothing_and_keeps_an_existing_store(data, tmp_path, monkeypatch):
    _, train, evaluate, _ = data
    out = tmp_path / "s"
    real = extract_module.record_clip

    def killed_at_six_frames(record, num_frames, *args):
        if num_frames == 6:
            raise RuntimeError("killed")
        return real(record, num_frames, *args)

    monkeypatch.setattr(extract_module, "record_clip", killed_at_six_frames)
    with pytest.raises(RuntimeError, match="killed"):  # after the 4-frame store was complete
        extract_qa_frame_stores([train, evaluate], QA, FRAMES, str(out), progress=False)
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(extract_module, "record_clip", real)
    extract_qa_frame_stores([train, evaluate], QA, [4], str(out), progress=False)
    with pytest.raises(FrameStoreError, match="already exists"):
        extract_qa_frame_stores([train, evaluate], QA, [4], str(out), progress=False)
    monkeypatch.setattr(extract_module, "record_clip", killed_at_six_frames)
    with pytest.raises(RuntimeError, match="killed"):
        extract_qa_frame_stores([train, evaluate], QA, FRAMES, str(out), overwrite=True, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["s"] and sorted(os.listdir(out)) == ["frames_4", "qa_stores.json"]
    stored_clips(out, qa_clips(train, evaluate), train, QA)  # the old store still serves
