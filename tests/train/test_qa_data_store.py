"""The QA data of an LMA config read from a QA frame store (data.frame_store): the batches of every curriculum
stage (train and eval) equal decoding's, and a store missing a stage's frame count is refused."""

import numpy as np
import pytest

from configs import lma
from liteframe_jax.data.extract import extract_qa_frame_stores
from liteframe_jax.data.pipeline import DataError
from liteframe_jax.data.qa_pipeline import PromptLayout
from liteframe_jax.train.qa_data import load_qa_records, qa_batches, qa_config, qa_stores, qa_tokenizer

CURRICULUM = [(2, 1), (4, 1)]


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """(config with data.frame_store set, tokenizer, train records, eval records)."""
    work = tmp_path_factory.mktemp("lma_store")
    config = lma.get_config("variant=tiny")
    config.data.synthetic_train_videos, config.data.synthetic_test_videos = 3, 2
    train, evaluate = load_qa_records(config)
    frames = [t for t, _ in CURRICULUM]
    extract_qa_frame_stores([train, evaluate], qa_config(config, frames[0]), frames, str(work / "store"),
                            progress=False)
    config.data.frame_store = str(work / "store")
    return config, qa_tokenizer(config, work)[0], train, evaluate


def test_every_stage_reads_the_batches_of_the_videos(setting):
    config, tok, train, evaluate = setting
    stores = qa_stores(config, train, evaluate, [t for t, _ in CURRICULUM])
    assert sorted(stores) == [2, 4]
    layout = PromptLayout(4)
    for t, (train_store, eval_store) in stores.items():
        qa = qa_config(config, t)
        for records, store, is_train, n in ((train, train_store, True, 4), (evaluate, eval_store, False, 2)):
            a, b = (iter(qa_batches(records, tok, qa, layout, 4, is_train, s)[0]) for s in (None, store))
            for _ in range(n):
                x, y = next(a), next(b)
                assert x.keys() == y.keys()
                for k in x:  # pixels bit-identical, token ids and masks identical
                    np.testing.assert_array_equal(x[k], y[k], err_msg=f"{t} frames, {k}")


def test_a_store_without_a_stage_is_refused_and_no_store_decodes(setting):
    config, _, train, evaluate = setting
    with pytest.raises(DataError, match=r"holds clips of \[2, 4\] frames, not 8"):
        qa_stores(config, train, evaluate, [2, 8])
    config = config.copy_and_resolve_references()
    config.data.frame_store = ""
    assert qa_stores(config, train, evaluate, [2, 8]) == {}


def test_separate_persistent_asks_event_questions_about_clips_without_the_persistent_object():
    config = lma.get_config("variant=tiny")
    config.data.synthetic_benchmark, config.data.synthetic_video_frames = "events", 128
    config.data.synthetic_train_videos, config.data.synthetic_test_videos = 3, 2
    config.data.synthetic_separate_persistent = True
    train, evaluate = load_qa_records(config)
    persistent = [r.synthetic["show_persistent"] for r in train if r.task.startswith("persistent")]
    events = [r.synthetic["show_persistent"] for r in train if not r.task.startswith("persistent")]
    assert persistent and all(persistent) and events and not any(events)
    assert all(r.synthetic["show_persistent"] for r in evaluate)


def test_dense_train_clips_see_every_event_at_12_frames_and_the_eval_split_stays_the_benchmarks():
    from liteframe_jax.data.evidence import evidence_ceiling

    config = lma.get_config("variant=tiny")
    config.data.synthetic_benchmark, config.data.synthetic_video_frames = "events", 128
    config.data.synthetic_train_videos, config.data.synthetic_test_videos = 4, 3
    benchmark_train, benchmark_eval = load_qa_records(config)
    config.data.synthetic_train_clips = "dense"
    train, evaluate = load_qa_records(config)
    assert {r.synthetic["num_frames"] for r in train} == {48}
    assert evidence_ceiling(train, 12).overall == 1.0
    assert [r.to_dict() for r in evaluate] == [r.to_dict() for r in benchmark_eval]
    assert {r.synthetic["num_frames"] for r in benchmark_train} == {128}
