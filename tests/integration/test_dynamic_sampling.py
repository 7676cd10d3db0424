"""DAPO dynamic sampling on the real stack (session vLLM engines and reward service).

Groups whose samples are all right or all wrong carry no GRPO signal: the sampler drops them and
draws more prompts until P informative groups are in hand, or reports exhaustion after
``max_rounds`` rounds. Then two driver steps of ``algo=dapo`` log the sampler's counters.
"""
from __future__ import annotations

import json

import pytest

from tests.integration.conftest import integration_config

pytestmark = pytest.mark.integration


def sampler_for(stack, *overrides):
    from rlsys.data.setup import build_prompt_sources
    from rlsys.orchestration.sampling import RegularSampler

    cfg = integration_config(*overrides)
    stream, _ = build_prompt_sources(cfg.data, stack.model_path)
    sampler = RegularSampler(stream, stack.rollout, stack.reward, cfg.rollout,
                             (True, cfg.algo.dynamic_sampling_max_rounds))
    return sampler, stream


def test_dynamic_sampling_keeps_only_informative_groups(stack):
    # Levels 1 and 3: level-3 groups are mostly all-wrong and some level-1 groups all-right,
    # so the first round almost surely drops groups and must refill.
    sampler, stream = sampler_for(stack, "data.difficulties=[1,3]", "algo.dynamic_sampling_max_rounds=12")
    prompts, kept, info = sampler.sample(stack.serve_base_weights(), step=0)
    P, G = stream.prompts_per_step, sampler.G
    assert info["sampler/dynamic_exhausted"] == 0.0, info
    assert len(kept.groups) == P and len(prompts.prompts) == P
    for g in kept.groups:
        assert g.n == G and 0 < g.n_correct < G, g  # informative: mixed outcomes
    # samples, results and prompts all belong to the kept groups, G per prompt, grades aligned
    kept_ids = [g.prompt_id for g in kept.groups]
    assert [p.prompt_id for p in prompts.prompts] == kept_ids
    assert len(kept.rollout.samples) == len(kept.results) == P * G
    assert sorted({s.prompt_id for s in kept.rollout.samples}) == sorted(kept_ids)
    for g in kept.groups:
        correct = [r.score for s, r in zip(kept.rollout.samples, kept.results) if s.prompt_id == g.prompt_id]
        assert sum(1 for c in correct if c is not None and c >= 0.5) == g.n_correct
    # every round drew P prompts from the stream; each was kept, dropped, or surplus of the last round
    rounds, dropped = int(info["sampler/dynamic_rounds"]), int(info["sampler/dynamic_dropped_groups"])
    assert stream.state_dict()["position"] == rounds * P  # one epoch holds far more than 12 * P rows
    assert rounds >= 1 and P + dropped <= rounds * P
    assert rounds == 1 or dropped > (rounds - 1) * P - P  # another round was drawn only while short


def test_dynamic_sampling_reports_exhaustion(stack):
    # Level 5 (two-digit products): the tiny model essentially never solves them, every group is
    # all-wrong, so 2 rounds cannot fill the batch.
    sampler, _ = sampler_for(stack, "data.difficulties=[5]", "algo.dynamic_sampling_max_rounds=2")
    _, kept, info = sampler.sample(stack.serve_base_weights(), step=0)
    assert info["sampler/dynamic_exhausted"] == 1.0
    assert info["sampler/dynamic_rounds"] == 2.0
    assert info["sampler/dynamic_dropped_groups"] + len(kept.groups) == 2 * sampler.stream.prompts_per_step
    assert all(0 < g.n_correct < g.n for g in kept.groups)


def test_dapo_preset_trains_on_informative_groups(stack, tmp_path):
    from rlsys.data.setup import build_prompt_sources
    from rlsys.orchestration.actors import ControllerClient, LearnerGroup
    from rlsys.orchestration.driver import Workers, loss_spec, run_loop

    cfg = integration_config(f"trainer.run_dir={tmp_path}", "algo=dapo", "data.difficulties=[1,3]",
                             "algo.dynamic_sampling_max_rounds=12")
    assert cfg.algo.dynamic_sampling
    stream, eval_prompts = build_prompt_sources(cfg.data, stack.model_path)
    learner = LearnerGroup(cfg.learner, stack.model_path, loss_spec(cfg), cfg.model.dtype)
    w = Workers(rollout=stack.rollout, reward=stack.reward, learner=learner, controller=ControllerClient(cfg))
    try:
        learner.align_rollout(stack.rollout)
        run_loop(cfg, w, stream, eval_prompts)
    finally:
        learner.shutdown()
        w.controller.shutdown()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert len(train) == cfg.trainer.total_steps
    for r in train:
        assert r["sampler/dynamic_rounds"] >= 1
        if r["sampler/dynamic_exhausted"] == 0.0:
            # only informative groups reach the learner: no all-right/all-wrong group, no zero advantage
            assert r["reward/frac_degenerate_groups"] == 0.0
            assert r["reward/p_hist/p=0"] == 0.0 and r["reward/p_hist/p=1"] == 0.0
            assert r["algo/frac_zero_adv"] == 0.0
