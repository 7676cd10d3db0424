"""Checkpoint and resume on the real stack: a run stopped after 2 steps continues at step 3 with
the learner's weights and optimiser, the controller's state, the prompt stream's cursor and the
first evaluation restored, on fresh learner and controller actors (the session's engines)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.conftest import REPO, integration_config, start_run_workers, stop_run_workers

pytestmark = pytest.mark.integration


def weights(learner) -> dict:
    import ray
    from safetensors.torch import load

    return load(ray.get(learner.full_state_dict_ref()))


def test_resume_continues_where_the_run_stopped(stack, tmp_path):
    import torch

    from rlsys.orchestration import checkpoint
    from rlsys.orchestration.driver import run_loop

    common = (f"trainer.run_dir={tmp_path}", "algo=aer", "trainer.save_every=1")
    cfg = integration_config(*common, "trainer.total_steps=2")
    w, stream, eval_prompts = start_run_workers(stack, cfg)
    try:
        first = run_loop(cfg, w, stream, eval_prompts)
        saved_weights, saved_controller = weights(w.learner), w.controller.state_dict()
        saved_position = stream.state_dict()["position"]
    finally:
        stop_run_workers(w)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest", "step_000001", "step_000002"]
    latest = checkpoint.check_resume_mode(cfg.trainer)
    assert latest.name == "step_000002"

    cfg3 = integration_config(*common, "trainer.total_steps=3")
    w, stream, eval_prompts = start_run_workers(stack, cfg3)
    try:
        saver = checkpoint.Checkpointer(cfg3.trainer, w, stream, _replay(cfg3), _batches(cfg3))
        assert saver.restore(latest) == 2
        restored = weights(w.learner)
        assert restored.keys() == saved_weights.keys()
        assert all(torch.equal(restored[k], saved_weights[k]) for k in restored)
        assert w.controller.state_dict() == saved_controller
        assert stream.state_dict()["position"] == saved_position
        assert w.learner.policy_version == first["policy_version"]
        second = run_loop(cfg3, w, stream, eval_prompts, resume_from=latest)
    finally:
        stop_run_workers(w)
    assert second["policy_version"] == first["policy_version"] + 1  # exactly one more step
    assert second["eval_before"] == first["eval_before"]
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [0, 1, 2]
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [0, 2, 3]  # no second "before" eval
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_000003"


def test_train_refuses_to_overwrite_checkpoints_with_resume_never(tmp_path):
    from rlsys.orchestration import checkpoint
    from rlsys.orchestration.checkpoint import RunState

    class NoLearner:
        def save_checkpoint(self, path):
            pass

    checkpoint.save(tmp_path, RunState(1, 1, {}, {}, {}), NoLearner())
    proc = subprocess.run([sys.executable, "-m", "rlsys", "train", str(REPO / "configs" / "demo.yaml"),
                           f"trainer.run_dir={tmp_path}", "trainer.resume=never"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "trainer.resume=auto" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "metrics.jsonl").exists()  # stopped before writing anything


def _replay(cfg):
    from rlsys.orchestration.driver import replay_sizes
    from rlsys.orchestration.sampling import ReplayStage

    return ReplayStage(*replay_sizes(cfg), seed=cfg.trainer.seed)


def _batches(cfg):
    from rlsys.orchestration.batching import BatchStage

    return BatchStage.from_config(cfg)
