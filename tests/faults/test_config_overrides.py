"""Config fields from the command line (issue 12, defect 8): every field can be set with --config.a.b=VALUE,
lists included, and a wrong name or value is one `error:` line before anything compiles."""

import json
import subprocess
import sys

from tests.train.ctd_cli import ROOT, env


def train(workdir, config, *overrides):
    return subprocess.run([sys.executable, "-m", "liteframe_jax.train", "--config", config, "--workdir",
                           str(workdir), *overrides], cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=300)


def one_error_line(proc) -> str:
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.replace("\r", "\n").splitlines()
             if line.strip() and not line.lstrip().startswith("train:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def test_an_unknown_field_is_one_line_with_the_nearest_name(tmp_path):
    line = one_error_line(train(tmp_path, "configs/ctd.py", "--config.train.batch_sise=16"))
    assert line == "error: --config.train.batch_sise: the config has no field 'batch_sise' (did you mean " \
                   "'batch_size'?)"
    line = one_error_line(train(tmp_path, "configs/ctd.py", "--config.lora.targets=q,v"))  # LMA only
    assert line == "error: --config.lora.targets: the config has no field 'lora'"


def test_a_value_of_the_wrong_type_is_one_line(tmp_path):
    line = one_error_line(train(tmp_path, "configs/ctd.py", "--config.train.batch_size=many"))
    assert "--config.train.batch_size=many" in line and "invalid literal for int()" in line


# train.batch_size=3 does not split over the 8 simulated devices: the run stops, in one line, right after writing
# DIR/config.json and before loading or compiling anything, which shows what the overrides set
UNSPLITTABLE = "--config.train.batch_size=3"


def test_list_and_unset_fields_of_the_ctd_config_can_be_set(tmp_path):
    line = one_error_line(train(
        tmp_path, "configs/ctd.py", "--config.student.image_size=56,56", "--config.wap.window=(1, 2, 2)",
        "--config.student.downsample=[{'after_block': 1, 'stride': [1, 2, 2], 'kernel': [1, 3, 3]}]",
        "--config.teacher.model.eos_token_id=5", UNSPLITTABLE))
    assert "train.batch_size=3 must be a multiple of the batch shards" in line
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["student"]["image_size"] == [56, 56] and config["wap"]["window"] == [1, 2, 2]
    assert config["student"]["downsample"] == [{"after_block": 1, "stride": [1, 2, 2], "kernel": [1, 3, 3]}]
    assert config["teacher"]["model"]["eos_token_id"] == 5


def test_lora_targets_can_be_set(tmp_path):
    line = one_error_line(train(tmp_path, "configs/lma.py", "--config.lora.targets=q,v", UNSPLITTABLE))
    assert "train.batch_size=3 must be a multiple of the batch shards" in line
    assert json.loads((tmp_path / "config.json").read_text())["lora"]["targets"] == ["q", "v"]


def test_the_experiment_commands_take_list_overrides_and_name_unknown_fields():
    """memory_plan, latency and train_throughput parse --config like training does (a list field reaches the
    config's own validation; an unknown field is one line)."""
    def run(module, *args):
        return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env(), capture_output=True,
                              text=True, timeout=300)

    proc = run("experiments.memory_plan", "--config", "configs/lma.py:variant=8b", "--mesh", "data=1,fsdp=8,tensor=1",
               "--config.lora.targets=q_proj,v_proj")
    assert proc.returncode == 1 and proc.stderr.startswith("error: cannot plan this LMA config"), proc.stderr
    assert "lora.targets=['q_proj', 'v_proj'] must be a non-empty subset" in proc.stderr
    for module, config in (("experiments.latency", "configs/latency.py:size=small"),
                           ("experiments.train_throughput", "configs/ctd.py")):
        line = one_error_line(run(module, "--config", config, "--config.nope=1"))
        assert line == "error: --config.nope: the config has no field 'nope'", module
