"""experiments.train_throughput: the CTD step timed with random weights, FLOPs and MFU accounting."""

import pytest

from configs import ctd
from experiments import flops
from experiments.memory_plan import PlanError, ctd_spec
from experiments.train_throughput import analytic_step_flops, measure


def test_tiny_ctd_step_is_timed_and_its_flops_counted():
    config = ctd.get_config("tiny")
    entry = measure(config, batch_size=8, frames=None, online=True, steps=2, warmup=1, frozen_dtype=None,
                    log=lambda _: None)
    assert entry["clips_per_s"] > 0 and entry["frames_per_s"] == pytest.approx(4 * entry["clips_per_s"])
    assert entry["step_ms"]["repeats"] == 2
    assert entry["analytic_flops"]["teacher"] > 0
    # XLA counts elementwise work too, so its count is at least the analytic matmul FLOPs (one device of 8)
    assert entry["xla_flops_per_device"] * 8 >= 0.9 * entry["analytic_flops"]["total"]


def test_model_flops_are_three_student_forwards_plus_the_teacher_when_online():
    config = ctd.get_config("tiny")
    setup = ctd_spec(config).setup
    student = flops.student_encoder(setup.student, 4)["total"]
    online = analytic_step_flops(setup, 2, 4, online=True)
    cached = analytic_step_flops(setup, 2, 4, online=False)
    assert cached == {"student": 6 * student, "teacher": 0.0, "total": 6 * student}
    assert online["teacher"] > flops.internvit(setup.teacher.vision, 4)["total"] * 2 > 0


def test_a_batch_that_does_not_split_over_the_devices_is_refused():
    with pytest.raises(PlanError, match="not a multiple of the 8 devices"):
        measure(ctd.get_config("tiny"), batch_size=4, frames=None, online=False, steps=1, warmup=0,
                log=lambda _: None)
