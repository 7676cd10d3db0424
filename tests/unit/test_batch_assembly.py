"""Batch assembly: advantages per (prompt, source) group, keep rules, coefficient broadcast, padding."""
import math

import torch

from rlsys.algo.batch import AdvantageSpec, assemble, shard
from rlsys.types import (ControlDirectives, GroupStats, KeepRule, Prompt, RolloutBatch, Sample, ScoredBatch,
                         VerifyResult)


def sample(pid, resp, score, source="regular", temperature=1.0, prompt=(1, 2)):
    return Sample(prompt_id=pid, prompt_token_ids=prompt, response_token_ids=resp,
                  response_logprobs=tuple(-0.5 for _ in resp), response_text="", finish_reason="stop",
                  temperature=temperature, source=source, policy_version=3)


def scored_of(samples, scores):
    prompts = tuple(Prompt(prompt_id=p, text="", token_ids=(1, 2), reference="0")
                    for p in dict.fromkeys(s.prompt_id for s in samples))
    results = tuple(VerifyResult(score=x, parsed=None, reason="") for x in scores)
    groups = tuple(GroupStats(prompt_id=p.prompt_id, n=0, n_correct=0, mean=0, std=0) for p in prompts)
    return ScoredBatch(rollout=RolloutBatch(prompts=prompts, samples=tuple(samples), policy_version=3),
                       results=results, groups=groups, policy_version=3)


def test_grpo_advantages_coefficients_and_layout():
    # prompt a: rewards (1,0,0,0) -> population-std GRPO advantages (sqrt3, -1/sqrt3, ...);
    # prompt b: all wrong -> 0 and, with keep rule nonzero_adv, dropped from the batch.
    s = [sample("a", (7,), 1.0), sample("a", (8, 9), 0.0), sample("a", (8,), 0.0), sample("a", (9,), 0.0),
         sample("b", (7,), 0.0), sample("b", (7,), 0.0)]
    d = ControlDirectives(policy_version=3, prompt_ids=("a", "b"), entropy_coef=(0.01, 0.02),
                          keep_rule_regular=KeepRule("nonzero_adv"))
    out = assemble(scored_of(s, [1, 0, 0, 0, 0, 0]), d, AdvantageSpec())
    assert torch.allclose(out.adv_B[:4], torch.tensor([math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3),
                                                       -1 / math.sqrt(3)]), atol=1e-5)
    assert out.kept_B.tolist() == [True, True, True, True, False, False]
    b = out.batch
    assert b.batch_size == 4 and b.sample_index_B.tolist() == [0, 1, 2, 3]
    assert torch.allclose(b.entropy_coef_B, torch.full((4,), 0.01))
    # Sample 1: prompt (1,2) + response (8,9): T = 4; response tokens predicted at columns 1 and 2.
    assert b.input_ids_BT[1].tolist() == [1, 2, 8, 9]
    assert b.loss_mask_BT[1].tolist() == [0.0, 1.0, 1.0]
    assert b.loss_mask_BT[0].tolist() == [0.0, 1.0, 0.0]
    assert b.attention_mask_BT[0].tolist() == [1, 1, 1, 0]
    assert b.global_num_tokens == 5 and b.global_num_seqs == 4
    assert b.old_logp_BT is None and b.policy_version == 3


def test_exploration_samples_form_their_own_group_and_keep_rule():
    # Regular group of "a" is all wrong (adv 0); its 4 exploration samples (1,1,0,0) are normalised
    # among themselves: (+1, +1, -1, -1); "positive_only" keeps the two correct ones.
    s = [sample("a", (7,), 0.0), sample("a", (7,), 0.0)] + [
        sample("a", (7,), x, source="explore", temperature=1.2) for x in (1.0, 1.0, 0.0, 0.0)]
    d = ControlDirectives(policy_version=3, prompt_ids=("a",), entropy_coef=(0.0,),
                          keep_rule_regular=KeepRule("nonzero_adv"), keep_rule_explore=KeepRule("positive_only"))
    out = assemble(scored_of(s, [0, 0, 1, 1, 0, 0]), d, AdvantageSpec(), use_rollout_logprobs=True)
    assert torch.allclose(out.adv_B, torch.tensor([0.0, 0.0, 1.0, 1.0, -1.0, -1.0]), atol=1e-5)
    assert out.batch.sample_index_B.tolist() == [2, 3]
    assert torch.allclose(out.batch.temperature_B, torch.full((2,), 1.2))
    assert out.batch.old_logp_BT[0, 1].item() == -0.5


def test_shards_cover_the_batch_and_keep_global_counts():
    s = [sample("a", (7,) * (i + 1), float(i % 2)) for i in range(5)]
    d = ControlDirectives(policy_version=3, prompt_ids=("a",), entropy_coef=(0.0,))
    batch = assemble(scored_of(s, [0, 1, 0, 1, 0]), d, AdvantageSpec()).batch
    parts = shard(batch, 2)
    assert sorted(sum((p.sample_index_B.tolist() for p in parts), [])) == [0, 1, 2, 3, 4]
    assert all(p.global_num_tokens == batch.global_num_tokens for p in parts)
