"""What a run leaves in its run dir: checkpoint pruning and the metrics file across reruns.

- ``checkpoint.prune`` keeps the newest ``keep`` complete checkpoints and never the one ``latest``
  names (nor an incomplete newer dir a crash left behind).
- ``MetricsLogger``: NaN/inf values are written as such, not dropped; a fresh run refuses a file
  with rows of an earlier run; a resumed run drops the rows past its checkpoint, so every step
  appears once.
"""
from __future__ import annotations

import json
import math

import pytest

from rlsys.metrics.logger import MetricsLogger
from rlsys.orchestration import checkpoint
from rlsys.orchestration.checkpoint import RunState


class NullLearner:
    def save_checkpoint(self, path: str) -> None:
        pass


def save(run_dir, step: int):
    state = RunState(step=step, policy_version=step, controller={}, stream={}, replay={})
    return checkpoint.save(run_dir, state, NullLearner())


def names(run_dir) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").glob("step_*"))


def test_prune_keeps_the_newest_complete_checkpoints(tmp_path):
    for step in (10, 20, 30):
        save(tmp_path, step)
    assert [p.name for p in checkpoint.prune(tmp_path, keep=2)] == ["step_000010"]
    assert names(tmp_path) == ["step_000020", "step_000030"]
    (tmp_path / "checkpoints" / "step_000040").mkdir()  # a save that crashed before its state file
    checkpoint.prune(tmp_path, keep=1)
    assert names(tmp_path) == ["step_000030", "step_000040"]  # latest (30) and the incomplete dir stay
    assert checkpoint.latest(tmp_path).name == "step_000030"


def test_prune_never_deletes_what_latest_names(tmp_path):
    save(tmp_path, 1)
    save(tmp_path, 2)
    (tmp_path / "checkpoints" / "latest").write_text("step_000001\n")  # pointed back by hand
    checkpoint.prune(tmp_path, keep=1)
    assert names(tmp_path) == ["step_000001", "step_000002"]


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_nonfinite_metrics_are_written_and_reported(tmp_path):
    logger = MetricsLogger(tmp_path / "metrics.jsonl", echo=False)
    assert logger.log(0, {"learner/loss": float("nan"), "learner/grad_norm": float("inf"), "ok": 1}) == [
        "learner/grad_norm", "learner/loss"]
    assert logger.log(1, {"learner/loss": 0.5}) == []
    logger.close()
    first, second = rows(tmp_path / "metrics.jsonl")
    assert math.isnan(first["learner/loss"]) and first["learner/grad_norm"] == math.inf and first["ok"] == 1.0
    assert second["learner/loss"] == 0.5


def test_a_fresh_run_refuses_metrics_of_an_earlier_run(tmp_path):
    path = tmp_path / "metrics.jsonl"
    logger = MetricsLogger(path, echo=False)
    logger.log(0, {"x": 1.0})
    logger.close()
    with pytest.raises(FileExistsError, match="earlier run"):
        MetricsLogger(path, echo=False)
    assert len(rows(path)) == 1  # untouched


def test_a_resumed_run_drops_rows_past_its_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    logger = MetricsLogger(path, echo=False)
    logger.log_eval(0, {"eval/pass@1": 0.4})
    for step in range(5):  # steps 0-4 ran, the checkpoint holds 3 steps done (steps 0-2)
        logger.log(step, {"x": float(step)})
        if step == 2:
            logger.log_eval(3, {"eval/pass@1": 0.5})
    logger.log_eval(5, {"eval/pass@1": 0.6})
    logger.close()
    resumed = MetricsLogger(path, echo=False, resume_step=3)
    resumed.log(3, {"x": 30.0})
    resumed.close()
    assert [(r["kind"], r["step"]) for r in rows(path)] == [
        ("eval", 0), ("train", 0), ("train", 1), ("train", 2), ("eval", 3), ("train", 3)]
    assert rows(path)[-1]["x"] == 30.0
