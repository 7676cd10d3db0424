"""Run checkpoint files: when they are due, where they go, the ``latest`` pointer and resume modes.

The learner here is a recorder of the paths it is given (the DeepSpeed side is exercised by
tests/integration/test_resume.py on the real stack).
"""
from __future__ import annotations

import pytest

from rlsys.config import ConfigError, TrainerConfig
from rlsys.orchestration import checkpoint
from rlsys.orchestration.checkpoint import RunState


class PathRecorder:
    def __init__(self):
        self.saved, self.loaded = [], []

    def save_checkpoint(self, path: str) -> None:
        self.saved.append(path)

    def load_checkpoint(self, path: str, policy_version: int) -> None:
        self.loaded.append((path, policy_version))


def state(step: int) -> RunState:
    return RunState(step=step, policy_version=step + 1, controller={"controller": "aer", "alpha": 0.1},
                    stream={"epoch": 0, "position": 8 * step}, entropy_memory={"q0": 0.5},
                    replay={"buffer": {}, "updates": 0, "last_staleness": 0.0}, eval_before={"eval/pass@1": 0.4})


def test_is_due_every_save_every_steps_and_after_the_last():
    t = TrainerConfig(total_steps=7, save_every=3)
    assert [s for s in range(1, 8) if checkpoint.is_due(t, s)] == [3, 6, 7]
    t0 = TrainerConfig(total_steps=7, save_every=0)
    assert [s for s in range(1, 8) if checkpoint.is_due(t0, s)] == [7]


def test_save_then_latest_then_load_round_trip(tmp_path):
    learner = PathRecorder()
    assert checkpoint.latest(tmp_path) is None
    checkpoint.save(tmp_path, state(2), learner)
    path = checkpoint.save(tmp_path, state(4), learner)
    assert path.name == "step_000004" and checkpoint.latest(tmp_path) == path
    assert learner.saved == [str((tmp_path / "checkpoints" / n / "learner").resolve())
                             for n in ("step_000002", "step_000004")]
    restored = checkpoint.load(path, learner)
    assert restored == state(4)
    assert learner.loaded == [(str((path / "learner").resolve()), 5)]


def test_latest_pointing_at_an_incomplete_checkpoint_is_an_error(tmp_path):
    checkpoint.save(tmp_path, state(1), PathRecorder())
    (tmp_path / "checkpoints" / "latest").write_text("step_000009\n")
    with pytest.raises(FileNotFoundError, match="step_000009"):
        checkpoint.latest(tmp_path)


def test_resume_modes(tmp_path):
    fresh = TrainerConfig(run_dir=str(tmp_path), resume="never")
    assert checkpoint.check_resume_mode(fresh) is None  # nothing there yet: both modes start fresh
    checkpoint.save(tmp_path, state(3), PathRecorder())
    with pytest.raises(ConfigError, match="trainer.resume=auto"):
        checkpoint.check_resume_mode(fresh)  # never overwrite a run's checkpoints
    auto = TrainerConfig(run_dir=str(tmp_path), resume="auto")
    assert checkpoint.check_resume_mode(auto).name == "step_000003"
