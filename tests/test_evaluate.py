"""`liteframe_jax.evaluate`: letter parsing, log-likelihood scoring against model.logits, accuracy/chance math,
batched generation against single answers, and the CLI's reports and errors."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from liteframe_jax.data.prompts import encode_prompt
from liteframe_jax.data.qa_pipeline import prompt_ids, question_text
from liteframe_jax.data.synthetic import SyntheticVideoSpec
from liteframe_jax.data.video_qa import LETTERS, QARecord, build_synthetic_benchmark, write_records
from liteframe_jax.evaluate import (_loglik_batch, evaluate_benchmark, paired_difference, parse_choice, strip_thinking,
                                    wilson)
from liteframe_jax.generate import answer, clip_pixels, load_model, prompt_layout
from tests.test_generate import build_tiny_checkpoints, cli_env

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 4
SPEC = SyntheticVideoSpec(num_frames=8, size=56)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return build_tiny_checkpoints(tmp_path_factory.getbasetemp() / "tiny_video_llm")


@pytest.fixture(scope="module")
def model(checkpoints):
    return load_model(checkpoints[0])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return cli_env(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def records():
    return build_synthetic_benchmark(SPEC, 2)  # 8 questions about 2 videos, 3 or 4 options each


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "liteframe_jax.evaluate", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("reply, letter", [
    ("B", "B"), ("B.", "B"), ("(B)", "B"), ("[C]", "C"), ("b", "B"), ("**D**", "D"), ("B) red", "B"),
    ("C. the red square", "C"), ("The answer is B", "B"), ("The answer is B because it moves.", "B"),
    ("Answer: (C)", "C"), ("The correct option is D.", "D"), ("I think C.", "C"), ("A", "A"),
    ("green", "B"), ("The Green.", "B"),  # the reply is one option's text
    ("A red square moves", None), ("E", None), ("", None), ("no idea", None), ("Apple", None),
])
def test_parse_choice(reply, letter):
    assert parse_choice(reply, 4, ("red", "green", "blue", "the red square")) == letter


@pytest.mark.parametrize("reply, rest", [
    ("<think>\nA is wrong, so not A.\n</think>\n\nC", "C"),  # InternVL3.5 thinking mode
    ("  <think>B? No.</think>The answer is D.", "The answer is D."),
    ("<think>A looks right but the reply was cut", ""),  # still thinking at max_new_tokens: no answer
    ("<think></think>B", "B"), ("B <think>x</think>", "B <think>x</think>"), ("B", "B"), ("", ""),
])
def test_a_leading_thinking_block_is_dropped_before_parsing(reply, rest):
    assert strip_thinking(reply) == rest


def test_generated_replies_are_parsed_after_their_thinking_block(model, records, monkeypatch):
    """evaluate_benchmark parses what follows `</think>`: the letters the reasoning mentions do not count."""
    import liteframe_jax.evaluate as evaluate

    picked = [dataclasses.replace(records[0], answer="B"), dataclasses.replace(records[1], answer="A")]
    replies = ["<think>A? The object is not A.</think>\nB", "<think>Maybe B, maybe A"]
    monkeypatch.setattr(evaluate, "_generate_batch", lambda model, ok, *args: replies[:len(ok)])
    result = evaluate_benchmark(model, picked, FRAMES, "generate", batch_size=2, system_message="none")
    assert [p["prediction"] for p in result["predictions"]] == ["B", None]
    assert [p["response"] for p in result["predictions"]] == replies  # the raw reply is kept
    assert result["overall"]["correct"] == 1 and result["unparsed"] == 1


def _direct_logliks(model, record, answers, system=None):
    """log p(answer tokens | prompt) per answer, one full model.logits call per answer (no batching)."""
    pixels = clip_pixels(model, record, FRAMES)
    prompt = prompt_ids(model.tokenizer, question_text(record), FRAMES, prompt_layout(model), system)
    out = []
    for tokens in answers:
        ids = np.concatenate([prompt, tokens])[None]
        logp = np.asarray(jax.nn.log_softmax(model.logits(ids, pixels)[0], axis=-1))
        out.append(sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(tokens)))
    return out


def test_loglik_scores_equal_model_logits_and_pick_the_most_likely_letter(model, records):
    picked = records[:3]  # batch_size 2: two calls, the second with a padding row; prompts of different lengths
    result = evaluate_benchmark(model, picked, FRAMES, "loglik", batch_size=2, system_message="none")
    assert [p["id"] for p in result["predictions"]] == [r.id for r in picked]
    for record, pred in zip(picked, result["predictions"]):
        letters = [encode_prompt(model.tokenizer, x) for x in LETTERS[:len(record.options)]]
        direct = _direct_logliks(model, record, letters)
        np.testing.assert_allclose(pred["scores"], direct, atol=1e-4)
        assert pred["prediction"] == LETTERS[int(np.argmax(direct))]
        assert max(direct) - sorted(direct)[-2] > 1e-3  # the pick is not a numerical tie
    assert result["unparsed"] == 0 and result["encode_prefill_ms_per_example"] is not None


def test_loglik_of_multi_token_answers_equals_model_logits(model, records):
    record = records[0]
    tok = model.tokenizer
    answers = [encode_prompt(tok, f"{x}. {o}").tolist() for x, o in zip(LETTERS, record.options)]
    assert min(len(a) for a in answers) > 1
    pixels = clip_pixels(model, record, FRAMES)
    key = ("k",)
    prompt = prompt_ids(tok, question_text(record), FRAMES, prompt_layout(model), None)
    scores = _loglik_batch(model, [{"key": key}], {key: model.encode_frames(pixels)}, [prompt], [answers], 3)
    np.testing.assert_allclose(scores[0], _direct_logliks(model, record, answers), atol=1e-4)


def test_loglik_text_scores_each_option_text_and_end_token_as_model_logits(model, records):
    picked = records[:3]  # batch_size 4: 12 rows (3 questions x 4 options) in three calls, options of many lengths
    result = evaluate_benchmark(model, picked, FRAMES, "loglik_text", batch_size=4, system_message="none")
    end = model.end_token_id
    for record, pred in zip(picked, result["predictions"]):
        replies = [encode_prompt(model.tokenizer, o).tolist() + [end] for o in record.options]
        assert len({len(r) for r in replies}) > 1 or len(picked) == 1
        direct = _direct_logliks(model, record, replies)
        np.testing.assert_allclose(pred["scores"], direct, rtol=1e-4, atol=1e-4)
        assert pred["prediction"] == LETTERS[int(np.argmax(direct))]
    assert result["method"] == "loglik_text" and result["unparsed"] == 0


def test_accuracy_and_chance_math(model, records):
    first = evaluate_benchmark(model, records[:6], FRAMES, "loglik", batch_size=4, system_message="none")
    predicted = [p["prediction"] for p in first["predictions"]]
    right = [True, False, True, True, False, False]
    changed = []
    for i, (record, pred, ok) in enumerate(zip(records[:6], predicted, right)):
        wrong = next(x for x in LETTERS[:len(record.options)] if x != pred)
        changed.append(dataclasses.replace(record, answer=pred if ok else wrong, task="t1" if i < 3 else "t2"))
    result = evaluate_benchmark(model, changed, FRAMES, "loglik", batch_size=4, system_message="none")
    chance = [1 / len(r.options) for r in changed]
    assert result["overall"] == {"accuracy": 0.5, "correct": 3, "total": 6, "chance": pytest.approx(np.mean(chance))}
    assert result["per_task"]["t1"] == {"accuracy": pytest.approx(2 / 3), "correct": 2, "total": 3,
                                        "chance": pytest.approx(np.mean(chance[:3])), "unparsed": 0}
    assert result["per_task"]["t2"]["correct"] == 1 and result["per_task"]["t2"]["total"] == 3
    assert [p["correct"] for p in result["predictions"]] == right


def test_batched_generation_matches_single_answers_and_skips_open_questions(model, records):
    open_question = QARecord(video="synthetic:0:1", question="What happens?", answer="things", id="open")
    picked = [records[0], open_question, records[5]]
    result = evaluate_benchmark(model, picked, FRAMES, "generate", batch_size=2, max_new_tokens=5,
                                system_message="none")
    assert result["skipped"] == [{"index": 1, "id": "open", "reason": "not multiple choice (no options); "
                                                                      "open-ended answers are not scored"}]
    assert result["overall"]["total"] == 2
    for record, pred in zip([picked[0], picked[2]], result["predictions"]):
        expected = answer(model, clip_pixels(model, record, FRAMES), question_text(record), 5, system_message="none")
        assert pred["response"] == expected
        assert pred["prediction"] == parse_choice(expected, len(record.options), record.options)
    assert result["unparsed"] == sum(p["prediction"] is None for p in result["predictions"])


def test_cli_reports_malformed_lines_unreadable_videos_and_open_questions(checkpoints, records, env, tmp_path):
    bench = tmp_path / "bench.jsonl"
    good = [dataclasses.replace(records[0], id="q1"), dataclasses.replace(records[1], id="x")]
    lines = [
        good[0].to_json(),                                                  # 1
        "",                                                                 # 2 blank: ignored
        "{not json",                                                        # 3
        json.dumps({"video": "synthetic:0:1", "options": ["a", "b"], "answer": "A"}),  # 4 no question
        good[1].to_json(),                                                  # 5
        good[1].to_json(),                                                  # 6 duplicate id
        json.dumps({"id": "gone", "video": str(tmp_path / "gone.mp4"), "question": "q?", "options": ["a", "b"],
                    "answer": "A"}),                                        # 7 missing video file
        json.dumps({"id": "open", "video": "synthetic:0:1", "question": "q?", "answer": "yes"}),  # 8 open question
    ]
    bench.write_text("\n".join(lines) + "\n")
    out_json = tmp_path / "result.json"
    out = cli("--checkpoint", checkpoints[0], "--benchmark", bench, "--method", "loglik", "--frames", FRAMES,
              "--system_message", "none", "--out", out_json, env=env)
    assert out.returncode == 0, out.stderr
    result = json.loads(out_json.read_text())
    assert [(s["line"], s.get("id")) for s in result["skipped"]] == [(3, None), (4, None), (6, None), (7, "gone"),
                                                                     (8, "open")]
    assert "question is missing" in result["skipped"][1]["reason"] and "duplicate id" in result["skipped"][2]["reason"]
    assert result["skipped"][3]["reason"] == "file not found"
    assert [p["line"] for p in result["predictions"]] == [1, 5]
    for key in ("checkpoint", "benchmark", "method", "num_frames", "tokens_per_frame_group", "frames_per_group",
                "visual_tokens", "overall", "per_task", "unparsed", "seconds"):
        assert key in result
    assert result["num_frames"] == FRAMES and result["visual_tokens"] == 2 * result["tokens_per_frame_group"]
    assert result["overall"]["total"] == 2
    assert "overall" in out.stdout and "chance" in out.stdout
    assert f"{bench}:3: skipped malformed record" in out.stderr
    assert not list(tmp_path.glob(".result.json*"))  # the atomic write left no temporary file


def test_cli_errors_and_help(checkpoints, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{broken\n[1, 2]\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    gone = tmp_path / "gone.jsonl"
    write_records(gone, [QARecord(video=str(tmp_path / "nothing.mp4"), question="q?", options=("a", "b"),
                                  answer="B")])
    cases = [
        (["--benchmark", bad], "has no valid records (2 malformed lines)"),
        (["--benchmark", empty], "has no valid records"),
        (["--benchmark", tmp_path / "missing.jsonl"], "does not exist"),
        (["--benchmark", gone, "--checkpoint", checkpoints[1]], "encoder-only LiteFrame checkpoint"),
        (["--benchmark", gone], "could be evaluated (1 skipped; first: line 1: file not found)"),
    ]
    procs = [subprocess.Popen([sys.executable, "-m", "liteframe_jax.evaluate", "--checkpoint", str(checkpoints[0]),
                               *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for args, _ in cases]
    for proc, (_, message) in zip(procs, cases):
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 1 and "error: " in stderr and message in stderr, (message, stderr)
    helped = cli("--help")
    assert helped.returncode == 0 and "loglik" in helped.stdout and "unparsed" in helped.stdout


def test_benchmark_rules_replace_prompt_and_letter_extraction(model, records):
    from liteframe_jax.data.benchmarks import RULES
    rule = RULES["videomme"]
    picked = [dataclasses.replace(r, options=r.options[:4] + ("x",) * (4 - len(r.options))) for r in records[:2]]
    result = evaluate_benchmark(model, picked, FRAMES, "generate", batch_size=2, max_new_tokens=4,
                                system_message="none", prompt=rule.prompt, parse=rule.parse)
    for record, pred in zip(picked, result["predictions"]):
        expected = answer(model, clip_pixels(model, record, FRAMES), rule.prompt(record), 4, system_message="none")
        assert pred["response"] == expected and pred["prediction"] == rule.parse(expected, record)


def test_cli_reads_an_mlvu_folder_and_reports_its_macro_average_and_missing_videos(checkpoints, env, tmp_path):
    from liteframe_jax.data.video import write_video
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    frames[1:, 8:24, 8:24] = 200
    for name in ("1_plotQA/a.mp4", "4_count/b.mp4"):  # MLVU: video/<task file stem>/<video>
        (tmp_path / "video" / name).parent.mkdir(parents=True, exist_ok=True)
        write_video(tmp_path / "video" / name, frames, fps=2.0)
    bench = tmp_path / "json"
    bench.mkdir()
    plot = [{"video": "a.mp4", "question": f"Question {k}?", "candidates": ["red", "blue", "green"],
             "answer": ["red", "blue", "green"][k % 3], "question_type": "plotQA"} for k in range(3)]
    plot.append({"video": "gone.mp4", "question": "q?", "candidates": ["a", "b"], "answer": "a",
                 "question_type": "plotQA"})
    (bench / "1_plotQA.json").write_text(json.dumps(plot))
    (bench / "4_count.json").write_text(json.dumps([{"video": "b.mp4", "question": "How many?",
                                                     "candidates": ["1", "2"], "answer": "2",
                                                     "question_type": "count"}]))
    out_json = tmp_path / "result.json"
    out = cli("--checkpoint", checkpoints[0], "--benchmark", bench, "--video_root", tmp_path / "video", "--method",
              "loglik", "--frames", FRAMES, "--system_message", "none", "--out", out_json, env=env)
    assert out.returncode == 0, out.stderr
    result = json.loads(out_json.read_text())
    assert result["format"] == "mlvu" and result["missing_videos"] == 1
    assert [(s["file"], s["item"], s["id"]) for s in result["skipped"]] == [("1_plotQA.json", 3, "1_plotQA:3")]
    assert "video not found" in result["skipped"][0]["reason"]
    assert [(p["file"], p["item"], p["answer"]) for p in result["predictions"]] == [
        ("1_plotQA.json", 0, "A"), ("1_plotQA.json", 1, "B"), ("1_plotQA.json", 2, "C"), ("4_count.json", 0, "B")]
    per_type = {t: np.mean([p["correct"] for p in result["predictions"] if p["task"] == t])
                for t in ("plotQA", "count")}
    assert result["aggregate"]["value"] == pytest.approx(np.mean(list(per_type.values())))
    assert result["aggregate"]["groups"]["question_type"]["plotQA"]["total"] == 3
    assert "mean accuracy over question_type (2)" in out.stdout
    assert "1 questions skipped: video not found" in out.stderr


def test_wilson_interval_matches_known_values():
    lo, hi = wilson(8, 10)  # 0.8 of 10: the textbook Wilson interval is [0.490, 0.943]
    assert abs(lo - 0.490) < 1e-3 and abs(hi - 0.943) < 1e-3
    lo, hi = wilson(0, 20)
    assert lo == 0 and abs(hi - 0.161) < 1e-3


def test_paired_difference_interval_covers_the_true_difference_95_percent_of_the_time():
    """Two models answering the same questions: joint law of (first right, second right) fixed, true difference
    0.05; Newcombe's paired interval must cover it in about 95% of 1000 simulated benchmarks of 300 questions."""
    rng = np.random.default_rng(0)
    law = np.array([0.35, 0.15, 0.10, 0.40])  # both right, only first, only second, neither
    covered, widths = 0, []
    for _ in range(1000):
        cell = rng.choice(4, size=300, p=law)
        first, second = np.isin(cell, (0, 1)).tolist(), np.isin(cell, (0, 2)).tolist()
        diff, lo, hi = paired_difference(first, second)
        assert lo <= diff <= hi
        covered += lo <= 0.05 <= hi
        widths.append(hi - lo)
    assert 0.93 <= covered / 1000 <= 0.97, covered
    # pairing pays: narrower than the difference of two independent Wilson intervals would allow
    lo1, hi1 = wilson(150, 300)
    assert np.mean(widths) < (hi1 - lo1) * 2 ** 0.5


def test_paired_difference_of_identical_answers_is_zero_and_checks_its_input():
    same = [True, False, True, True]
    diff, lo, hi = paired_difference(same, same)
    assert diff == 0 and lo <= 0 <= hi
    diff, lo, hi = paired_difference([True] * 40, [False] * 40)
    assert diff == 1 and 0.8 < lo < 1 and hi == 1
    with pytest.raises(ValueError, match="same length"):
        paired_difference([True], [True, False])
