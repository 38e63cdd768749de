"""The training loop against a toy task (linear regression in two phases): it trains, logs, evaluates,
checkpoints, resumes an interrupted run into the right phase and data position so that it reproduces the straight
run exactly, exports once at the end, and stops on a non-finite loss with the last good checkpoint intact.
This is the specification of the Task interface (liteframe_jax.train.task)."""

import dataclasses
import json
import os
import signal

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from liteframe_jax.data.pipeline import SkipStats
from liteframe_jax.train import loop
from liteframe_jax.train.checkpointing import CheckpointError
from liteframe_jax.train.optim import OptimConfig, guarded_update
from liteframe_jax.train.task import LoopConfig, Phase

DIM, PHASE_STEPS, BATCH = 4, 3, 8
W_TRUE = np.arange(1.0, DIM + 1, dtype=np.float32)


class ToyBatches:
    """Batches {"x": (B, DIM), "y": (B,)} of phase `stage`, deterministic in (stage, position); the batch that
    feeds global step `poison` holds NaNs, the second one skips an example. Checkpointable like a grain
    iterator."""

    def __init__(self, stage: int, first_step: int, poison: int = -1, skips: SkipStats | None = None,
                 signal_at: tuple[int, int] | None = None):
        self.stage, self.first_step, self.poison, self.position = stage, first_step, poison, 0
        self.skips = SkipStats() if skips is None else skips
        self.signal_at = signal_at  # (step, signal): this process gets the signal while that step's batch loads

    def __next__(self):
        rng = np.random.default_rng([self.stage, self.position])
        if self.position == 1:
            self.skips.record(f"clip{self.stage}.mp4: unreadable")
        x = rng.normal(size=(BATCH, DIM)).astype(np.float32)
        if self.first_step + self.position == self.poison:
            x[:] = np.nan
        if self.signal_at and self.first_step + self.position == self.signal_at[0]:
            os.kill(os.getpid(), self.signal_at[1])
        self.position += 1
        return {"x": x, "y": x @ W_TRUE, "unused": np.zeros(BATCH)}

    def get_state(self) -> dict:
        return {"position": self.position}

    def set_state(self, state: dict) -> None:
        self.position = state["position"]


def _step(tx, state, scale, batch):
    """One guarded SGD step on the mean squared error of x @ (scale * w)."""
    return guarded_update(tx, state, lambda p: _loss(p, scale, batch))


def _loss(params, scale, batch):
    loss = jnp.mean((batch["x"] @ (scale * params["w"]) - batch["y"]) ** 2)
    return loss, {"loss": loss}


class ToyTask:
    """Two phases of PHASE_STEPS steps with their own data streams; frozen argument: a scale of 1."""

    skipped_what = "broken"

    def __init__(self, config):
        if config.train.batch_size != BATCH:
            raise ValueError(f"train.batch_size must be {BATCH}")
        self.config = config
        self.loop = LoopConfig.from_config(config.train)
        self.optim = OptimConfig(peak_lr=0.05, warmup_steps=1, total_steps=2 * PHASE_STEPS).validate()
        self.tx = optax.sgd(0.2)
        self.exports = 0
        self.phases_built = []

    def setup(self, run):
        self.run = run
        self.replicated = NamedSharding(run.mesh, P())
        self.frozen = (jax.device_put(jnp.float32(1.0), self.replicated),)

    def _abstract(self):
        params = {"w": jax.ShapeDtypeStruct((DIM,), jnp.float32)}
        return {"step": jax.ShapeDtypeStruct((), jnp.int32), "params": params,
                "opt": jax.eval_shape(self.tx.init, params)}

    def state_target(self):
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self.replicated),
                            self._abstract())

    def init_state(self):
        params = {"w": jnp.zeros((DIM,), jnp.float32)}
        state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt": self.tx.init(params)}
        return jax.device_put(state, self.replicated)

    def banner(self, start):
        return f"toy: {'resuming at step %d' % start if start else 'fresh start'}"

    def phase(self, step):
        stage = (step - 1) // PHASE_STEPS
        self.phases_built.append(stage)
        skips = SkipStats()
        eval_data = lambda: (next(ToyBatches(99, 0)) for _ in range(4))
        return Phase(last_step=(stage + 1) * PHASE_STEPS,
                     batches=ToyBatches(stage, stage * PHASE_STEPS + 1, self.config.poison_step, skips,
                                        self.config.get("signal_at")), skips=skips,
                     train_step=jax.jit(lambda *a: _step(self.tx, *a), donate_argnums=0),
                     eval_step=jax.jit(lambda p, s, b: _loss(p, s, b)[1]), eval_batches=eval_data,
                     data_tag={"stage": stage}, log_extra={"stage": stage}, message=f"phase {stage}")

    def inputs(self, batch):
        return {"x": batch["x"], "y": batch["y"]}

    def export(self, state, workdir):
        self.exports += 1
        np.save(workdir / "w.npy", np.asarray(state["params"]["w"]))
        return f"weights written to {workdir / 'w.npy'}"


def toy_config(**train):
    c = ml_collections.ConfigDict()
    c.mesh = {"data": -1}
    c.sharding_rules = [("batch", ("data",))]
    c.poison_step = -1
    c.train = dict(batch_size=BATCH, log_every=1, eval_every=PHASE_STEPS, eval_batches=2, checkpoint_every=2,
                   keep_checkpoints=5, async_checkpoints=True, stop_at_step=-1)
    c.train.update(train)
    return c


def records(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def train_losses(workdir):
    return [(r["step"], r["loss"], r["stage"]) for r in records(workdir) if "loss" in r]


def checkpoint_steps(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    work = tmp_path_factory.mktemp("toy_straight")
    task = ToyTask(toy_config())
    last = loop.run(task, work)
    return work, task, last


def test_the_loop_trains_logs_evaluates_checkpoints_and_exports_once(straight):
    work, task, last = straight
    recs = train_losses(work)
    assert [s for s, _, _ in recs] == list(range(1, 7)) and [g for *_, g in recs] == [0, 0, 0, 1, 1, 1]
    assert recs[-1][1] < recs[0][1]
    train_rec = next(r for r in records(work) if "loss" in r)
    assert {"lr", "grad_norm", "skipped_examples", "steps_per_second"} <= set(train_rec)
    assert [r["step"] for r in records(work) if "eval/loss" in r] == [3, 6]
    assert task.phases_built == [0, 1] and task.exports == 1
    np.testing.assert_allclose(np.load(work / "w.npy"), W_TRUE, atol=1.0)
    assert checkpoint_steps(work) == [2, 4, 6]
    assert last["step"] == 6 and "eval/loss" in last and last["skipped_examples"] == 2
    assert json.loads((work / "config.json").read_text())["train"]["batch_size"] == BATCH


def test_an_interrupted_run_resumes_into_the_right_phase_and_data_position(straight, tmp_path, capfd):
    ref, _, _ = straight
    work = tmp_path / "resumed"
    first = ToyTask(toy_config(stop_at_step=5))  # stops inside phase 1, off the checkpoint cadence
    loop.run(first, work)
    assert first.exports == 0 and not (work / "w.npy").exists()
    assert checkpoint_steps(work) == [2, 4, 5]
    assert "stopping at step 5" in capfd.readouterr().err
    second = ToyTask(toy_config())
    loop.run(second, work)
    err = capfd.readouterr().err
    assert "toy: resuming at step 5" in err and "phase 1" in err
    assert second.phases_built == [1] and second.exports == 1
    assert train_losses(work) == train_losses(ref)  # identical, step for step
    np.testing.assert_array_equal(np.load(work / "w.npy"), np.load(ref / "w.npy"))
    skipped = [[r["skipped_examples"] for r in records(w) if "loss" in r] for w in (work, ref)]
    assert skipped[0] == skipped[1] == [0, 1, 1, 1, 2, 2]  # saved counts + the resumed stream's, no double count
    assert "skipped 2 broken examples in total" in err


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    task = ToyTask(toy_config(checkpoint_every=3))
    task.config.poison_step = 5
    with pytest.raises(loop.NonFiniteLossError, match=r"non-finite loss at step 5.*last good checkpoint \(step 3\)"):
        loop.run(task, tmp_path)
    assert checkpoint_steps(tmp_path) == [3] and task.exports == 0
    assert max(s for s, _, _ in train_losses(tmp_path)) == 4


def test_a_batch_that_does_not_split_over_the_mesh_is_refused_before_training(tmp_path):
    task = ToyTask(toy_config())
    task.loop = LoopConfig.from_config({**toy_config().train, "batch_size": 12})
    with pytest.raises(ValueError, match="multiple of the batch shards data x fsdp = 8"):
        loop.run(task, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_loop_settings_are_checked_with_their_field_names():
    errors = LoopConfig.from_config({**toy_config().train, "batch_size": 3, "eval_every": 0}).errors(2)
    assert errors == ["train.batch_size=3 must divide over 2 processes", "train.eval_every=0 must be >= 1"]


def test_a_resume_with_another_process_count_is_refused_before_the_task_loads_anything(straight, tmp_path):
    import shutil
    shutil.copytree(straight[0] / "checkpoints", tmp_path / "checkpoints")
    data = tmp_path / "checkpoints" / "6" / "data" / "metadata"  # as if written by 2 processes
    saved = json.loads(data.read_text())
    data.write_text(json.dumps({**saved, "process_count": 2, "iterators": saved["iterators"] * 2}))
    task = ToyTask(toy_config())
    with pytest.raises(ValueError, match=r"written by 2 process\(es\) and this run has 1"):
        loop.run(task, tmp_path)
    assert not hasattr(task, "run")  # setup never ran


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_checkpoints_the_current_step_and_a_rerun_continues_exactly(straight, tmp_path, capfd, signum):
    ref, _, _ = straight
    work = tmp_path / "signalled"
    before = signal.getsignal(signum)
    first = ToyTask(toy_config())
    first.config.signal_at = (5, signum)  # mid phase 1, off the checkpoint cadence
    loop.run(first, work)  # returns normally: no exception, no traceback
    err = capfd.readouterr().err
    assert f"received {signal.Signals(signum).name}" in err
    assert f"stopped at step 5 on {signal.Signals(signum).name}" in err and "run the same command again" in err
    assert checkpoint_steps(work) == [2, 4, 5] and first.exports == 0
    assert signal.getsignal(signum) is before  # the handlers are given back
    second = ToyTask(toy_config())
    loop.run(second, work)
    assert train_losses(work) == train_losses(ref) and second.exports == 1
    np.testing.assert_array_equal(np.load(work / "w.npy"), np.load(ref / "w.npy"))


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler for the test, and the process's previous one back after it. A process started
    with SIGINT ignored (a background job of a non-interactive shell, `cmd &` in a script) keeps it ignored:
    Python then installs no KeyboardInterrupt handler, and StopRequest rightly gives the ignored disposition back
    on a second signal, so the test would see no KeyboardInterrupt."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_a_second_interrupt_stops_at_once(python_sigint):
    stop = loop.StopRequest()
    with stop, pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal_name == "SIGINT"
        os.kill(os.getpid(), signal.SIGINT)  # the previous handler (Python's) raises KeyboardInterrupt
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class BrokenEvalTask(ToyTask):
    """The toy task whose held-out data fails on its `fail_on`-th read (1 = the first)."""

    def __init__(self, config, fail_on: int):
        super().__init__(config)
        self.fail_on, self.reads = fail_on, 0

    def phase(self, step):
        phase = super().phase(step)
        good = phase.eval_batches

        def eval_batches():
            self.reads += 1
            if self.reads >= self.fail_on:
                raise ValueError("no example could be read: held-out clips are corrupt")
            return good()

        return dataclasses.replace(phase, eval_batches=eval_batches)


def test_an_unreadable_held_out_split_stops_the_run_before_the_first_step(tmp_path):
    task = BrokenEvalTask(toy_config(), fail_on=1)
    with pytest.raises(ValueError, match="held-out clips are corrupt"):
        loop.run(task, tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists() or not train_losses(tmp_path)
    assert not (tmp_path / "checkpoints").exists() or checkpoint_steps(tmp_path) == []


def test_an_evaluation_failure_keeps_the_finished_step(tmp_path):
    task = BrokenEvalTask(toy_config(checkpoint_every=100), fail_on=3)  # the check, then eval at step 3 ok, fail at 6
    with pytest.raises(ValueError, match="held-out clips are corrupt"):
        loop.run(task, tmp_path)
    assert checkpoint_steps(tmp_path) == [6] and task.exports == 0


def _garble(step_dir, how):
    state = step_dir / "state"
    if how == "metadata_deleted":
        (state / "_METADATA").unlink()
        return
    files = [p for p in state.rglob("*") if p.is_file() and p.name != "_METADATA"]
    assert files
    for p in files:  # truncated: what a crash mid-copy or a full disk leaves
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3])


@pytest.mark.parametrize("how", ["metadata_deleted", "truncated"])
def test_an_unreadable_newest_checkpoint_is_moved_aside_and_the_run_resumes_from_the_previous(straight, tmp_path,
                                                                                                capfd, how):
    ref, _, _ = straight
    work = tmp_path / "run"
    loop.run(ToyTask(toy_config(stop_at_step=5)), work)
    _garble(work / "checkpoints" / "5", how)
    capfd.readouterr()
    loop.run(ToyTask(toy_config()), work)
    err = capfd.readouterr().err
    assert "checkpoint step 5 cannot be read" in err and "resuming from step 4" in err
    assert [p.name.split("-")[0] for p in (work / "checkpoints.unreadable").iterdir()] == ["5"]  # kept, not deleted
    assert train_losses(work)[-2:] == train_losses(ref)[-2:]
    np.testing.assert_array_equal(np.load(work / "w.npy"), np.load(ref / "w.npy"))


def test_checkpoints_that_do_not_fit_the_config_are_refused_and_left_in_place(straight, tmp_path):
    work = tmp_path / "run"
    loop.run(ToyTask(toy_config(stop_at_step=4)), work)

    class WiderTask(ToyTask):
        def _abstract(self):
            params = {"w": jax.ShapeDtypeStruct((DIM + 1,), jnp.float32)}
            return {"step": jax.ShapeDtypeStruct((), jnp.int32), "params": params,
                    "opt": jax.eval_shape(self.tx.init, params)}

    with pytest.raises(CheckpointError, match=r"no checkpoint .* can be restored .*newest: step 4.*config"):
        loop.run(WiderTask(toy_config()), work)
    assert checkpoint_steps(work) == [2, 4] and not (work / "checkpoints.unreadable").exists()
