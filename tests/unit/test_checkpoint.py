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
                    stream={"epoch": 0, "position": 8 * step},
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


def test_a_checkpoint_with_the_retired_entropy_memory_still_loads(tmp_path):
    # Checkpoints written before the driver stopped keeping a per-prompt entropy memory pickled a
    # RunState whose __dict__ also held ``entropy_memory``; that is all an old state.pkl differs in.
    old = state(3)
    old.__dict__["entropy_memory"] = {"q0": 0.5}
    path = checkpoint.save(tmp_path, old, PathRecorder())
    restored = checkpoint.load(path, PathRecorder())
    assert restored == state(3) and not hasattr(restored, "entropy_memory")


def test_latest_pointing_at_an_incomplete_checkpoint_is_an_error(tmp_path):
    checkpoint.save(tmp_path, state(1), PathRecorder())
    (tmp_path / "checkpoints" / "latest").write_text("step_000009\n")
    with pytest.raises(FileNotFoundError, match="step_000009"):
        checkpoint.latest(tmp_path)


def test_a_broken_latest_pointer_is_a_config_error_naming_the_run_dir(tmp_path):
    checkpoint.save(tmp_path, state(1), PathRecorder())
    (tmp_path / "checkpoints" / "latest").write_text("step_000009\n")
    with pytest.raises(ConfigError, match=rf"trainer.run_dir='{tmp_path}': .*names step_000009, which has no "
                                          rf"state.pkl"):
        checkpoint.check_resume_mode(TrainerConfig(run_dir=str(tmp_path)))


def test_resume_modes(tmp_path):
    fresh = TrainerConfig(run_dir=str(tmp_path), resume="never")
    assert checkpoint.check_resume_mode(fresh) is None  # nothing there yet: both modes start fresh
    checkpoint.save(tmp_path, state(3), PathRecorder())
    with pytest.raises(ConfigError, match="trainer.resume=auto"):
        checkpoint.check_resume_mode(fresh)  # never overwrite a run's checkpoints
    auto = TrainerConfig(run_dir=str(tmp_path), resume="auto")
    assert checkpoint.check_resume_mode(auto).name == "step_000003"


def test_metrics_without_a_checkpoint_are_refused(tmp_path):
    auto = TrainerConfig(run_dir=str(tmp_path), resume="auto")
    (tmp_path / "metrics.jsonl").write_text("")
    assert checkpoint.check_resume_mode(auto) is None  # an empty file is nothing to lose
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 0}\n')
    with pytest.raises(ConfigError, match="holds metrics.jsonl of an earlier run but no checkpoint to resume from: "
                                          "choose another trainer.run_dir or remove it"):
        checkpoint.check_resume_mode(auto)
    checkpoint.save(tmp_path, state(1), PathRecorder())
    assert checkpoint.check_resume_mode(auto).name == "step_000001"  # with a checkpoint it resumes


def run_with_saved_config(tmp_path, *overrides: str):
    """A run dir with a checkpoint and the config.yaml of the run that wrote it."""
    from rlsys.config import load_config

    cfg = load_config(None, [f"trainer.run_dir={tmp_path}", *overrides])
    cfg.write(tmp_path / "config.yaml")
    return cfg, checkpoint.save(tmp_path, state(2), PathRecorder())


def test_resume_with_a_changed_config_names_every_difference(tmp_path):
    from rlsys.config import load_config

    _, found = run_with_saved_config(tmp_path)
    changed = load_config(None, [f"trainer.run_dir={tmp_path}", "data.seed=7", "algo.eps_high=0.28",
                                 "data.difficulties=[1,2]", "trainer.total_steps=99"])
    with pytest.raises(ConfigError) as e:
        checkpoint.check_resume_config(changed, found)
    msg = str(e.value)
    assert "data.seed: 0 -> 7" in msg and "algo.eps_high: 0.2 -> 0.28" in msg
    assert "data.difficulties: [1, 2, 3] -> [1, 2]" in msg
    assert "total_steps" not in msg and "\n" not in msg  # total_steps may change; one line


def test_resume_may_change_length_schedules_and_placement(tmp_path):
    from rlsys.config import load_config

    _, found = run_with_saved_config(tmp_path)
    allowed = load_config(None, [f"trainer.run_dir={tmp_path}", "trainer.total_steps=99", "trainer.save_every=5",
                                 "trainer.eval_every=3", "cluster.address=127.0.0.1:6379", "reward.timeout_s=9",
                                 "rollout.num_workers=1", "model.cache_dir=/elsewhere"])
    checkpoint.check_resume_config(allowed, found)
    checkpoint.check_resume_config(allowed, None)  # nothing to resume: nothing to compare
    (tmp_path / "config.yaml").unlink()
    checkpoint.check_resume_config(load_config(None, ["data.seed=3"]), found)  # no saved config: passes


def test_unreadable_saved_config_is_named(tmp_path):
    from rlsys.config import load_config

    cfg, found = run_with_saved_config(tmp_path)
    (tmp_path / "config.yaml").write_text("nosuch: {key: 1}\n")
    with pytest.raises(ConfigError, match="cannot read the config of the run to resume"):
        checkpoint.check_resume_config(cfg, found)


class NodeView:
    """Learner ranks as ``ranks_not_reading`` sees them: rank r reads the file through ``views[r]``
    (the driver's filesystem, or None for a node where the path is something else)."""

    def __init__(self, *views):
        self.views, self.asked = views, []

    def ranks_not_reading(self, path: str, text: str) -> list[str]:
        from pathlib import Path

        self.asked.append((path, text, Path(path).read_text()))
        return [f"learner-rank-{r} (node 10.0.0.{r + 1})" for r, v in enumerate(self.views) if v is None]


def test_run_dir_check_passes_when_every_rank_reads_the_drivers_text_and_leaves_nothing(tmp_path):
    view = NodeView("shared", "shared")
    checkpoint.check_run_dir_shared(tmp_path, view)
    (path, text, on_disk), = view.asked
    assert path == str(tmp_path.absolute() / checkpoint.SHARED_CHECK_FILE) and on_disk == text and len(text) == 32
    assert list(tmp_path.iterdir()) == []


def test_a_run_dir_another_rank_cannot_see_is_refused_naming_the_rank_and_its_node(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer.run_dir='.*' is not the same directory for learner-rank-1 "
                                          r"\(node 10.0.0.2\) as for the driver: each learner rank writes its "
                                          r"checkpoint shard there"):
        checkpoint.check_run_dir_shared(tmp_path, NodeView("shared", None))
    assert list(tmp_path.iterdir()) == []
    first = NodeView("shared", "shared")
    checkpoint.check_run_dir_shared(tmp_path, first)
    second = NodeView("shared", "shared")
    checkpoint.check_run_dir_shared(tmp_path, second)
    assert first.asked[0][1] != second.asked[0][1]  # fresh text each time: a stale file cannot pass
