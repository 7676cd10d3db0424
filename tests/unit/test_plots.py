"""`rlsys plot RUN_DIR` and the TensorBoard sink, on a metrics.jsonl written by the real logger."""
from __future__ import annotations

import pytest

from rlsys import cli
from rlsys.metrics.logger import MetricsLogger
from rlsys.metrics.plots import FIGURES, RunDirError, read_rows, series, write_plots


def a_run(run_dir, sinks=(), steps=5) -> None:
    logger = MetricsLogger(run_dir / "metrics.jsonl", sinks=sinks, echo=False)
    logger.log_eval(0, {"eval/pass@1": 0.3, "eval/pass@4": 0.6})
    for step in range(steps):
        logger.log(step, {"reward/accuracy_mean": 0.3 + 0.05 * step, "entropy/token_mean": 1.0 - 0.1 * step,
                          "entropy/bucket/p=0": 1.2, "entropy/target": 0.9, "entropy/coef_mean": 1e-3,
                          "perf/step_seconds": 2.0, "perf/rollout_seconds": 1.0})
    logger.log_eval(steps, {"eval/pass@1": 0.5, "eval/pass@4": 0.8})
    logger.close()


def test_plots_of_a_run(tmp_path, capsys):
    a_run(tmp_path)
    paths = write_plots(tmp_path)
    assert sorted(p.name for p in paths) == sorted(f"{f.name}.png" for f in FIGURES)
    assert all(p.parent == tmp_path / "plots" and p.read_bytes().startswith(b"\x89PNG") for p in paths)
    rows = read_rows(tmp_path)
    assert series(rows, "eval", "eval/pass@1") == ([0, 5], [0.3, 0.5])
    assert series(rows, "train", "entropy/target")[0] == [0, 1, 2, 3, 4]
    assert cli.main(["plot", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("wrote ") == len(FIGURES)


def test_a_figure_without_data_is_not_written(tmp_path):
    logger = MetricsLogger(tmp_path / "metrics.jsonl", echo=False)
    logger.log(0, {"reward/accuracy_mean": 0.5})
    logger.close()
    assert [p.name for p in write_plots(tmp_path)] == ["reward.png"]


def test_bad_run_dirs_are_named(tmp_path, capsys):
    with pytest.raises(RunDirError, match="no metrics.jsonl"):
        write_plots(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "kind": "train"}\nnot json\n')
    with pytest.raises(RunDirError, match=r"metrics.jsonl:2: not a JSON row"):
        read_rows(tmp_path)
    assert cli.main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlsys plot: ") and "metrics.jsonl:2" in err and "Traceback" not in err


def test_tensorboard_sink_writes_every_scalar(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rlsys.metrics.tensorboard import TensorBoardSink

    a_run(tmp_path, sinks=[TensorBoardSink(tmp_path / "tensorboard")], steps=3)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert "entropy/token_mean" in events.Tags()["scalars"]
    values = [(e.step, round(e.value, 6)) for e in events.Scalars("reward/accuracy_mean")]
    assert values == [(0, 0.3), (1, 0.35), (2, 0.4)]
    assert [(e.step, round(e.value, 6)) for e in events.Scalars("eval/pass@1")] == [(0, 0.3), (3, 0.5)]


def test_tensorboard_requested_but_missing_is_named(monkeypatch):
    from rlsys.config import Config, ConfigError, TrainerConfig
    from rlsys.orchestration import preflight

    monkeypatch.setattr(preflight, "tensorboard_installed", lambda: False)
    with pytest.raises(ConfigError, match="trainer.tensorboard=true"):
        preflight.check_sinks(Config(trainer=TrainerConfig(tensorboard=True)))
    preflight.check_sinks(Config())  # off: nothing needed
