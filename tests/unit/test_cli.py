"""Command-line parsing: overrides may follow options; unknown options are refused."""
from pathlib import Path

import pytest

from rlsys import cli


def test_eval_overrides_after_options_are_overrides(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "_eval", lambda a: seen.setdefault("a", a) and 0)
    cli.main(["eval", "runs/x", "--k", "4", "rollout.num_workers=1", "--temperature", "0.5", "data.num_eval=8"])
    a = seen["a"]
    assert (a.target, a.k, a.temperature) == ("runs/x", 4, 0.5)
    assert a.overrides == ["rollout.num_workers=1", "data.num_eval=8"]


def test_unknown_option_is_an_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "configs/demo.yaml", "--no-such-flag"])
    assert e.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err


def test_cli_import_does_not_import_ray():
    import subprocess
    import sys

    code = "import sys, rlsys.cli\nassert 'ray' not in sys.modules and 'torch' not in sys.modules\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")


def make_error(kind: str) -> BaseException:
    from rlsys.config import ConfigError
    from rlsys.data.datasets import DatasetError
    from rlsys.orchestration.actors import WorkerDied
    from rlsys.orchestration.driver import RunStopped

    return {"stopped": RunStopped("SIGINT", 130, 5), "died": WorkerDied("learner-rank-1 died: boom"),
            "nonfinite": FloatingPointError("4 steps logged NaN/inf metrics\n(trainer.max_nonfinite_steps=3)"),
            "dataset": DatasetError("d.jsonl: line 3: column 'verifier': unknown verifier 'x'"),
            "too_small": ConfigError("the cluster has 1 CPUs but the config asks for 1.75")}[kind]


@pytest.mark.parametrize("kind, phase, code, line", [
    ("dataset", "check", 2, "rlsys train: d.jsonl: line 3: column 'verifier': unknown verifier 'x'"),
    ("too_small", "start", 2, "rlsys train: the cluster has 1 CPUs but the config asks for 1.75"),
    ("stopped", "start", 130, "rlsys train: stopped by SIGINT after step 4; checkpoint saved in "
                              "runs/cli-test/checkpoints, run the same command to continue"),
    ("died", "start", 1, "rlsys train: learner-rank-1 died: boom"),
    ("nonfinite", "start", 1, "rlsys train: 4 steps logged NaN/inf metrics (trainer.max_nonfinite_steps=3)"),
])
def test_train_failures_are_one_line_with_their_exit_code(monkeypatch, capsys, kind, phase, code, line):
    from rlsys.orchestration import driver, preflight

    err, plan = make_error(kind), object()

    def check_run(cfg):
        if phase == "check":
            raise err
        return plan

    def start_run(cfg, given):
        assert given is plan  # the CLI starts what the check phase planned
        raise err

    monkeypatch.setattr(preflight, "check_run", check_run)
    monkeypatch.setattr(driver, "start_run", start_run)
    assert cli.main(["train", DEMO, "trainer.run_dir=runs/cli-test"]) == code
    assert capsys.readouterr().err.strip() == line


def test_train_checks_run_before_ray_or_torch_is_imported(tmp_path):
    """A bad input fails in the check phase without importing ray or torch (they take seconds)."""
    import subprocess
    import sys

    code = ("import sys\nfrom rlsys import cli\n"
            f"rc = cli.main(['train', {DEMO!r}, 'trainer.run_dir={tmp_path / 'run'}', 'data.default_verifier=nope'])\n"
            "assert rc == 2, rc\nassert 'ray' not in sys.modules and 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "data.default_verifier='nope': unknown verifier 'nope'" in done.stderr
    assert not (tmp_path / "run").exists()


def test_invalid_config_is_exit_2_on_one_line(capsys):
    assert cli.main(["train", DEMO, "algo.eps_low=1.5", "learner.zero_stage=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("rlsys train: invalid config: ") and "algo.eps_low" in err
