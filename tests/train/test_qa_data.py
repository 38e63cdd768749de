"""Reading an LMA config's QA files: malformed lines are skipped with their line numbers, and the trainer says how
many records of a file it kept (a duplicated id, e.g. from merging two files built with the same seed, silently
shrinks a training set otherwise)."""

from configs import lma
from liteframe_jax.data.video_qa import synthetic_spec, synthetic_splits, write_records
from liteframe_jax.train.qa_data import load_qa_records


def test_a_merged_file_with_repeated_ids_reports_how_many_records_it_kept(tmp_path):
    train, _ = synthetic_splits(synthetic_spec("shapes"), 2, 0)
    path = tmp_path / "merged.jsonl"
    write_records(path, train + train[:3])  # the same clips and questions twice: same ids
    config = lma.get_config("variant=tiny")
    config.data.train_file = config.data.eval_file = str(path)
    lines = []
    kept, _ = load_qa_records(config, log=lines.append)
    assert len(kept) == len(train)
    assert f"{path}:{len(train) + 1}: skipped malformed record: duplicate id {train[0].id!r} (first on line 1)" \
        in lines
    assert f"{path}: 3 of {len(train) + 3} records skipped, {len(train)} kept" in lines


def test_a_clean_file_is_read_without_messages(tmp_path):
    train, _ = synthetic_splits(synthetic_spec("shapes"), 2, 0)
    path = tmp_path / "train.jsonl"
    write_records(path, train)
    config = lma.get_config("variant=tiny")
    config.data.train_file = str(path)
    lines = []
    assert len(load_qa_records(config, log=lines.append)[0]) == len(train)
    assert lines == []


def test_extra_questions_add_one_task_from_more_clips_with_other_ids():
    config = lma.get_config("variant=tiny")
    d = config.data
    d.synthetic_benchmark, d.synthetic_video_frames, d.synthetic_train_videos = "events", 128, 3
    base, _ = load_qa_records(config)
    d.synthetic_extra_videos, d.synthetic_extra_tasks = 4, "persistent_shape"
    lines = []
    train, _ = load_qa_records(config, log=lines.append)
    assert lines == ["adding the persistent_shape questions of 4 more synthetic clips"]
    extra = train[len(base):]
    assert train[:len(base)] == base
    assert len(extra) == 4 and {r.task for r in extra} == {"persistent_shape"}
    assert not {r.id for r in extra} & {r.id for r in base}  # no id the train file reader would drop
    assert {r.synthetic["seed"] for r in extra} == {1} and {r.synthetic["num_frames"] for r in extra} == {128}


def test_extra_questions_are_checked_before_training():
    from liteframe_jax.train.experiment import extra_questions_problems

    d = lma.get_config("variant=tiny").data
    assert extra_questions_problems(d) == []
    d.synthetic_extra_videos, d.synthetic_extra_tasks = 5, "persistent_shape"  # a task of events, not of shapes
    assert "tasks of the 'shapes' benchmark" in extra_questions_problems(d)[0]
    d.synthetic_extra_tasks = "shape,color"
    assert extra_questions_problems(d) == []
    d.train_file = "train.jsonl"
    assert "embedded synthetic benchmark only" in extra_questions_problems(d)[0]
    d.synthetic_extra_videos = -1
    assert ">= 0" in extra_questions_problems(d)[0]
    d.train_file, d.synthetic_extra_videos = "", 0  # tasks without clips would silently add nothing
    assert "synthetic_extra_videos is 0" in extra_questions_problems(d)[0]
    d.synthetic_extra_tasks = ""
    assert extra_questions_problems(d) == []


def test_extra_questions_are_drawn_from_dense_clips_when_asked():
    """data.synthetic_extra_clips: the extra questions' clips are the eval split's (128 frames) or their dense
    variant (48 frames, every event seen by 12), drawn with seed + 1 either way."""
    config = lma.get_config("variant=tiny")
    config.data.synthetic_benchmark, config.data.synthetic_video_frames = "events", 128
    config.data.synthetic_train_videos, config.data.synthetic_test_videos = 2, 1
    config.data.synthetic_extra_videos, config.data.synthetic_extra_tasks = 3, "event_count,persistent_shape"
    frames = {}
    for clips in ("benchmark", "dense"):
        config.data.synthetic_extra_clips = clips
        train, _ = load_qa_records(config, log=lambda _: None)
        extra = [r for r in train if r.video.startswith("synthetic:1:")]
        assert sorted(r.task for r in extra) == ["event_count"] * 3 + ["persistent_shape"] * 3
        frames[clips] = {r.synthetic["num_frames"] for r in extra}
    assert frames == {"benchmark": {128}, "dense": {48}}
