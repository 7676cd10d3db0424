"""HORA on the real stack: probe, allocation by the controller actor, a second pass with per-prompt n,
one group per prompt, and the driver loop's hora/* metrics (docs/algorithms.md#hora).

One step is driven stage by stage (to look at the groups), then the driver loop runs 2 steps with
the preset. Engines and the reward service are the session's.
"""
from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from tests.integration.conftest import integration_config, start_run_workers, stop_run_workers

pytestmark = pytest.mark.integration

P, G, N_PROBE = 8, 4, 2  # integration_config's P and G; budget P * (G - n_probe) = 16
BUDGET = P * (G - N_PROBE)


def expected_grpo_adv(rewards: list[float]) -> list[float]:
    r = torch.tensor(rewards, dtype=torch.float64)
    std = r.std(unbiased=False)
    if float(r.max() - r.min()) == 0.0:
        return [0.0] * len(rewards)
    return ((r - r.mean()) / (std + 1e-6)).tolist()


def test_hora_allocates_the_budget_into_one_group_per_prompt(stack, tmp_path):
    from rlsys.algo.batch import assemble
    from rlsys.metrics.compute import P_BUCKETS
    from rlsys.orchestration.driver import advantage_spec, explore_pass, regular_samples_per_prompt, run_loop
    from rlsys.orchestration.sampling import RegularSampler
    from rlsys.orchestration.stages import SeedScope, merge_scored, prompt_stats

    cfg = integration_config(f"trainer.run_dir={tmp_path}", "algo=hora",
                             f"entropy_control.hora_n_probe={N_PROBE}", "data.difficulties=[1,3]")
    assert (cfg.data.prompts_per_step, cfg.rollout.samples_per_prompt) == (P, G)
    w, stream, eval_prompts = start_run_workers(stack, cfg)
    try:
        version = w.learner.align_rollout(stack.rollout)
        # ---- one step, stage by stage
        sampler = RegularSampler(stream, w.rollout, w.reward, cfg.rollout,
                                 samples_per_prompt=regular_samples_per_prompt(cfg))
        prompts, probe, _ = sampler.sample(version, step=0)
        assert [g.n for g in probe.groups] == [N_PROBE] * P
        directives = w.controller.observe(prompt_stats(probe), version)
        assert directives.extra_joins_group and directives.policy_version == version
        assert directives.extra_budget == BUDGET and sum(directives.extra_samples) == BUDGET
        extra = explore_pass(w, prompts, directives, version, SeedScope(cfg.rollout.seed, "explore", 0))
        merged = merge_scored(probe, extra)
        sizes = Counter(s.prompt_id for s in merged.rollout.samples)
        want = {pid: N_PROBE + m for pid, m in zip(directives.prompt_ids, directives.extra_samples)}
        assert dict(sizes) == want  # the engines honour each request's own n
        assert len(set(sizes.values())) > 1, f"expected varying group sizes, got {sizes}"
        assert all(s.source == "regular" and s.temperature == cfg.rollout.temperature for s in merged.rollout.samples)
        assembled = assemble(merged, directives, advantage_spec(cfg))
        rewards = merged.rewards
        for pid in sizes:  # GRPO's advantage over the prompt's whole merged group
            idx = [i for i, s in enumerate(merged.rollout.samples) if s.prompt_id == pid]
            got = [float(assembled.adv_B[i]) for i in idx]
            assert got == pytest.approx(expected_grpo_adv([rewards[i] for i in idx]), rel=1e-4, abs=1e-6)
        assert assembled.batch.batch_size == P * N_PROBE + BUDGET
        stats = w.learner.train_step(assembled.batch)
        assert stats.scalars["learner/num_tokens"] > 0
        w.controller.record_learner_stats(stats)
        version, _ = w.learner.push_weights(w.rollout)
        # ---- the driver loop, 2 steps
        summary = run_loop(cfg, w, stream, eval_prompts)
        rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        train = [r for r in rows if r["kind"] == "train"]
        assert len(train) == 2
        for r in train:
            assert r["hora/budget"] == BUDGET and r["hora/budget_used"] == BUDGET
            assert r["rollout/num_samples"] == P * N_PROBE + BUDGET and r["rollout/num_explore_samples"] == 0
            assert r["hora/samples_per_prompt_mean"] == pytest.approx(G)
            assert r["hora/samples_per_prompt_min"] >= N_PROBE
            assert sum(r[f"hora/samples/{b}"] for b in P_BUCKETS) == r["rollout/num_samples"]
            assert r["learner/num_tokens"] > 0 and "filter/empty_batch" not in r
        assert any(r["hora/samples_per_prompt_max"] > r["hora/samples_per_prompt_min"] for r in train)
        assert summary["policy_version"] == version + 2
        assert summary["controller_state"] == {"controller": "hora", "step": 3}
    finally:
        stop_run_workers(w)
