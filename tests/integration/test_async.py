"""One-step-off training (trainer.async_steps=1) on the real stack: the driver loop samples step k+1
on the engines while the learner ranks train step k; every batch after the first is one update behind
the learner, never more; the controller is told the version a batch was sampled with; a checkpoint
taken while a pass is ahead resumes at that step's prompts. Engines and reward service are the
session's; the learner ranks and the controller are fresh."""
from __future__ import annotations

import json
import pickle

import pytest

from tests.integration.conftest import integration_config, start_run_workers, stop_run_workers

pytestmark = pytest.mark.integration

STEPS = 3


def test_async_one_step_off_trains_each_batch_one_version_behind(stack, tmp_path):
    from rlsys.orchestration import checkpoint
    from rlsys.orchestration.driver import run_loop

    cfg = integration_config(f"trainer.run_dir={tmp_path}", "trainer.async_steps=1", f"trainer.total_steps={STEPS}",
                             "trainer.save_every=2", "algo=aer", "learner.num_ranks=2")
    w, stream, eval_prompts = start_run_workers(stack, cfg)
    try:
        summary = run_loop(cfg, w, stream, eval_prompts)
        first = summary["policy_version"] - STEPS  # what align_rollout left the engines at
        rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        train = [r for r in rows if r["kind"] == "train"]
        assert [r["async/staleness_steps"] for r in train] == [0.0, 1.0, 1.0]
        assert all(r["async/wait_seconds"] >= 0.0 and r["learner/num_tokens"] > 0 for r in train)
        assert summary["rollout_versions"] == [first + STEPS] * cfg.rollout.num_workers
        # the controller saw every step's stats with the version they were sampled at: AER counted them all
        assert summary["controller_state"]["step"] == STEPS and summary["controller_state"]["learner_steps"] == STEPS
        # the checkpoint after 2 steps was saved while step index 2's pass was ahead: it records the stream as it
        # was before that pass, so a resume samples those prompts again instead of skipping them
        with open(checkpoint.checkpoints_dir(tmp_path) / "step_000002" / checkpoint.STATE_FILE, "rb") as f:
            state = pickle.load(f)
        stream.load_state_dict(state.stream)
        assert stream.next_batch().prompts == _prompts_of_step(cfg, stack, 2)
    finally:
        stop_run_workers(w)


def _prompts_of_step(cfg, stack, step: int):
    """The prompts a fresh stream hands out for ``step`` (the stream draws one batch per step here)."""
    from rlsys.data.setup import build_prompt_sources

    stream, _ = build_prompt_sources(cfg.data, stack.model_path)
    for _ in range(step):
        stream.next_batch()
    return stream.next_batch().prompts
