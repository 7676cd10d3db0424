"""Faults injected into real runs: ``kill -9`` of a rollout engine, a grading process, the reward actor
or a learner rank.

- A rollout engine or the reward actor killed while a run trains: Ray restarts it, the group
  re-syncs it to the current weights, the interrupted call is sent again and the step completes
  with a full batch; the restart is counted in the metrics (the session's shared engines and
  reward actor are the ones killed: after the test they are alive again, at a newer version). A
  killed grading process is replaced by the service; the answer it was grading, if any, is
  ungradable, and the step completes.
- A learner rank killed: the run ends within a bound, naming the rank; the last checkpoint is
  intact and a rerun on fresh ranks resumes from it.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from tests.integration.conftest import integration_config, start_run_workers, stop_run_workers

pytestmark = pytest.mark.integration


def train_rows(run_dir) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == "train"]


class KillAfterStep(threading.Thread):
    """Sends SIGKILL to ``pid_fn()`` once ``step`` shows in metrics.jsonl (bounded wait)."""

    def __init__(self, run_dir, step: int, pid_fn, timeout_s: float = 600):
        super().__init__(daemon=True)
        self.run_dir, self.step, self.pid_fn, self.timeout_s = run_dir, step, pid_fn, timeout_s
        self.killed_pid, self.killed_at = None, None

    def run(self):
        deadline = time.time() + self.timeout_s
        while time.time() < deadline:
            if any(r["step"] >= self.step for r in train_rows(self.run_dir)):
                self.killed_pid = self.pid_fn()
                os.kill(self.killed_pid, signal.SIGKILL)
                self.killed_at = time.time()
                return
            time.sleep(0.05)


def test_killed_rollout_engine_and_reward_actor_are_restarted_and_the_steps_complete(stack, tmp_path):
    from rlsys.orchestration.driver import run_loop

    cfg = integration_config(f"trainer.run_dir={tmp_path}", "trainer.total_steps=4", "trainer.save_every=0")
    P, G = cfg.data.prompts_per_step, cfg.rollout.samples_per_prompt
    engine_pids, reward_pid = stack.rollout.pids(), stack.reward.pid()
    w, stream, eval_prompts = start_run_workers(stack, cfg)
    kill_engine = KillAfterStep(tmp_path, 0, lambda: engine_pids[0])
    kill_grader = KillAfterStep(tmp_path, 1, lambda: stack.reward.worker_pids()[0])
    kill_reward = KillAfterStep(tmp_path, 2, lambda: reward_pid)
    try:
        kill_engine.start()
        kill_grader.start()
        kill_reward.start()
        summary = run_loop(cfg, w, stream, eval_prompts)
    finally:
        stop_run_workers(w)
    assert kill_engine.killed_pid == engine_pids[0] and kill_reward.killed_pid == reward_pid
    assert kill_grader.killed_pid is not None
    rows = train_rows(tmp_path)
    assert [r["step"] for r in rows] == [0, 1, 2, 3]  # nothing lost, nothing twice
    assert all(r["rollout/num_samples"] == P * G for r in rows), [r["rollout/num_samples"] for r in rows]
    assert rows[-1]["rollout/actor_restarts"] == 1 and rows[0]["rollout/actor_restarts"] == 0
    assert rows[-1]["reward/actor_restarts"] == 1
    # the restarted engine is a new process serving the run's final weights, like the other one
    new_pids = stack.rollout.pids()
    assert new_pids[0] != engine_pids[0] and new_pids[1:] == engine_pids[1:]
    assert stack.rollout.policy_versions() == [summary["policy_version"]] * len(new_pids)
    assert stack.reward.pid() != reward_pid


def test_killed_learner_rank_ends_the_run_naming_it_and_the_rerun_resumes(stack, tmp_path):
    from rlsys.orchestration import checkpoint
    from rlsys.orchestration.actors import WorkerDied
    from rlsys.orchestration.driver import run_loop

    common = (f"trainer.run_dir={tmp_path}", "trainer.save_every=1", "trainer.keep_checkpoints=2")
    cfg = integration_config(*common, "trainer.total_steps=6")
    w, stream, eval_prompts = start_run_workers(stack, cfg)
    killer = KillAfterStep(tmp_path, 3, lambda: w.learner.pids()[1])  # 3 checkpoints were saved by then
    try:
        killer.start()
        with pytest.raises(WorkerDied, match="learner-rank-1 died"):
            run_loop(cfg, w, stream, eval_prompts)
        noticed_s = time.time() - killer.killed_at
    finally:
        stop_run_workers(w)
    print(f"\n[faults] learner rank 1 killed: the run ended {noticed_s:.1f} s later")
    assert noticed_s < 120  # bounded: gloo's own timeout would be 30 min
    latest = checkpoint.latest(tmp_path)
    done = int(latest.name.removeprefix("step_"))
    complete = [p for p in (tmp_path / "checkpoints").glob("step_*") if (p / checkpoint.STATE_FILE).exists()]
    assert done >= 3 and len(complete) == 2  # older ones pruned (a save the kill cut short is incomplete)

    w, stream, eval_prompts = start_run_workers(stack, cfg)  # fresh ranks and controller
    try:
        summary = run_loop(cfg, w, stream, eval_prompts, resume_from=checkpoint.check_resume_mode(cfg.trainer))
    finally:
        stop_run_workers(w)
    steps = [r["step"] for r in train_rows(tmp_path)]
    assert steps == list(range(6)), steps  # each step once: the rows past the checkpoint were replaced
    assert summary["rollout_versions"] == [summary["policy_version"]] * 2
