"""AER, UEC-RL and AsymGRPO on the real stack: their directives take effect end to end.

Each test drives one step stage by stage (to look at what each stage produced), then runs the
driver loop for 2 more steps with the preset. Engines and the reward service are the session's.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from tests.integration.conftest import integration_config

pytestmark = pytest.mark.integration


class Run:
    """A learner group + controller for one preset, on the session's engines."""

    def __init__(self, stack, tmp_path, *overrides):
        from rlsys.data.setup import build_prompt_sources
        from rlsys.orchestration.actors import ControllerClient, LearnerGroup
        from rlsys.orchestration.driver import Workers, loss_spec

        self.cfg = integration_config(f"trainer.run_dir={tmp_path}", *overrides)
        self.stream, self.eval_prompts = build_prompt_sources(self.cfg.data, stack.model_path)
        learner = LearnerGroup(self.cfg.learner, stack.model_path, loss_spec(self.cfg), self.cfg.model.dtype)
        self.w = Workers(rollout=stack.rollout, reward=stack.reward, learner=learner,
                         controller=ControllerClient(self.cfg))
        self.version = learner.align_rollout(stack.rollout)

    def first_step(self):
        """One real step, stage by stage; returns what each stage produced."""
        from rlsys.algo.batch import assemble
        from rlsys.orchestration.driver import advantage_spec, explore_pass
        from rlsys.orchestration.sampling import RegularSampler
        from rlsys.orchestration.stages import SeedScope, merge_scored, prompt_stats

        sampler = RegularSampler(self.stream, self.w.rollout, self.w.reward, self.cfg.rollout)
        prompts, scored, _ = sampler.sample(self.version, step=0)
        directives = self.w.controller.observe(prompt_stats(scored), self.version)
        explore = explore_pass(self.w, prompts, directives, self.version, SeedScope(self.cfg.rollout.seed, "explore", 0))
        merged = merge_scored(scored, explore)
        assembled = assemble(merged, directives, advantage_spec(self.cfg))
        stats = self.w.learner.train_step(assembled.batch)
        self.w.controller.record_learner_stats(stats)
        self.version, _ = self.w.learner.push_weights(self.w.rollout)
        return scored, directives, explore, assembled, stats

    def loop(self):
        from rlsys.orchestration.driver import run_loop

        return run_loop(self.cfg, self.w, self.stream, self.eval_prompts)

    def close(self):
        self.w.learner.shutdown()
        self.w.controller.shutdown()


def expected_coef_token_mean(batch) -> float:
    tokens_B = batch.loss_mask_BT.sum(dim=1)
    return float((batch.entropy_coef_B * tokens_B).sum() / tokens_B.sum())


def train_rows(tmp_path):
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "train"]


def test_aer_coefficients_follow_difficulty_and_reach_the_loss(stack, tmp_path):
    alpha0 = 0.005
    run = Run(stack, tmp_path, "algo=aer", f"entropy_control.aer_alpha_init={alpha0}",
              "entropy_control.aer_rho=0.5", "data.difficulties=[1,3]")
    try:
        scored, directives, _, assembled, stats = run.first_step()
        p_by_prompt = {g.prompt_id: g.n_correct / g.n for g in scored.groups}
        coef_by_prompt = dict(zip(directives.prompt_ids, directives.entropy_coef))
        # Indicator weight: lambda_q = alpha_0 exactly for p <= rho, 0 for easier prompts.
        for pid, p in p_by_prompt.items():
            assert coef_by_prompt[pid] == pytest.approx(alpha0 if p <= 0.5 else 0.0)
        assert len(set(p > 0.5 for p in p_by_prompt.values())) == 2, "need both hard and easy prompts"
        # ... and the learner applied exactly those per-sample coefficients on every token.
        assert stats.scalars["learner/entropy_coef_token_mean"] == pytest.approx(
            expected_coef_token_mean(assembled.batch), rel=1e-5)
        state = run.w.controller.state_dict()
        assert math.isfinite(json.loads(json.dumps(state, default=float)).get("h0", 0.0) or 0.0)
        summary = run.loop()
        rows = train_rows(tmp_path)
        assert len(rows) == 2 and all("entropy/initial" in r and "entropy/target" in r for r in rows)
        assert rows[0]["entropy/target"] == pytest.approx(0.4 * rows[0]["entropy/initial"])
        assert summary["policy_version"] == run.version + 2
    finally:
        run.close()


def test_uec_rl_explores_exactly_the_all_wrong_prompts(stack, tmp_path):
    g_extra, t_extra = 6, 1.2
    run = Run(stack, tmp_path, "algo=uec_rl", f"entropy_control.uec_extra_samples={g_extra}",
              f"entropy_control.uec_extra_temperature={t_extra}", "entropy_control.uec_replay_every=1",
              "data.difficulties=[3]", "algo.ref_kl_coef=0.0",
              "entropy_control.uec_batch_buffer=false")  # every step trains, so replay admits in 2 steps
    try:
        scored, directives, explore, assembled, _ = run.first_step()
        hard = {g.prompt_id for g in scored.groups if g.n_correct == 0}
        assert hard, "the tiny model should fail every sample of some level-3 prompts"
        assert explore is not None
        by_prompt: dict[str, list] = {}
        for s in explore.rollout.samples:
            by_prompt.setdefault(s.prompt_id, []).append(s)
        assert set(by_prompt) == hard
        for samples in by_prompt.values():
            assert len(samples) == g_extra
            assert all(s.temperature == t_extra and s.source == "explore" for s in samples)
        # Paper keep rule for exploration samples: only positive advantages enter the batch.
        kept_explore = [bool(k) for k, s in zip(assembled.kept_B, scored.rollout.samples + explore.rollout.samples)
                        if s.source == "explore"]
        explore_adv = assembled.adv_B[len(scored.rollout.samples):]
        assert kept_explore == (explore_adv > 0).tolist()
        run.loop()
        rows = train_rows(tmp_path)
        assert all("sampler/hard_prompts" in r and "replay/buffer_size" in r for r in rows)
        assert rows[-1]["replay/buffer_size"] > 0
    finally:
        run.close()


def test_uec_rl_batch_buffer_trains_only_whole_multiples_of_p_times_g(stack, tmp_path):
    import pickle

    from rlsys.orchestration import checkpoint

    P, G = 2, 4
    unit = P * G
    run = Run(stack, tmp_path, "algo=uec_rl", f"data.prompts_per_step={P}", f"rollout.samples_per_prompt={G}",
              "entropy_control.uec_extra_samples=6", "data.difficulties=[1,2,3]", "algo.ref_kl_coef=0.0",
              "trainer.save_every=1")
    try:
        assert run.cfg.entropy_control.uec_batch_buffer  # the preset's default
        run.loop()
        rows = train_rows(tmp_path)
        assert len(rows) == 2
        held = 0
        for r in rows:
            trained, dropped = r["uec/batch_buffer_trained"], r["uec/batch_buffer_dropped"]
            # This step's kept samples join the FIFO; the largest multiple of P*G is trained, the rest waits.
            assert trained == (held + r["filter/kept_samples"] - dropped) // unit * unit
            assert trained % unit == 0 and r["uec/batch_buffer_size"] < unit
            assert r["uec/batch_buffer_size"] == held + r["filter/kept_samples"] - dropped - trained
            assert ("learner/loss" in r) == (trained > 0)  # no learner update without a whole multiple
            if trained:  # the learner's per-sample statistics cover exactly the trained samples
                assert sum(v for k, v in r.items() if k.startswith("entropy/bucket_samples/")) == trained
                # rows sampled this step are 0 updates old; rows that waited a step at most 1
                staleness = r["uec/batch_buffer_staleness_steps"]
                assert staleness == 0.0 if held == 0 else 0.0 <= staleness <= 1.0
            held = r["uec/batch_buffer_size"]
        assert sum(r["filter/kept_samples"] for r in rows) >= unit, "need >= P*G kept samples in 2 steps"
        assert sum(r["uec/batch_buffer_trained"] for r in rows) > 0
        state = pickle.loads((checkpoint.latest(tmp_path) / checkpoint.STATE_FILE).read_bytes())
        assert len(state.batch_buffer["buffer"]["items"]) == rows[-1]["uec/batch_buffer_size"]  # resumes exactly
    finally:
        run.close()


def test_asymgrpo_advantages_and_outcome_split_entropy(stack, tmp_path):
    run = Run(stack, tmp_path, "algo=asymgrpo", "data.difficulties=[1,2,3]")
    try:
        scored, _, _, assembled, _ = run.first_step()
        rewards = torch.tensor(scored.rewards)
        for g in scored.groups:
            p = g.n_correct / g.n
            idx = [i for i, s in enumerate(scored.rollout.samples) if s.prompt_id == g.prompt_id]
            for i in idx:
                if p in (0.0, 1.0):
                    want = 0.0
                elif rewards[i] >= 0.5:
                    want = ((1 - p) / p) ** 0.9
                else:
                    want = -((p / (1 - p)) ** 0.4)
                assert float(assembled.adv_B[i]) == pytest.approx(want, rel=1e-4, abs=1e-6)
        run.loop()
        rows = train_rows(tmp_path)
        assert any("entropy/pos_rollouts" in r or "entropy/neg_rollouts" in r for r in rows)
    finally:
        run.close()
