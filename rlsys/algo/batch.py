"""Batch assembly: scored rollouts + controller directives -> padded ``TrainBatch`` tensors.

Pure: records and torch in, records out. Group advantages are computed per (prompt, source), so
UEC-RL's exploration samples are normalised within their own extra group (docs/algorithms.md#uec_rl, step 3).
Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rlsys.algo.advantages import compute_advantages
from rlsys.algo.shaping import keep_mask, overlong_penalty
from rlsys.types import ControlDirectives, Sample, ScoredBatch, TrainBatch


@dataclass(frozen=True)
class AdvantageSpec:
    mode: str = "grpo_std"  # grpo_std | mean_only | asym_power | sign
    ddof: int = 0
    beta_pos: float = 0.9
    beta_neg: float = 0.4
    overlong_cache_len: int = 0  # DAPO soft overlong window (0 = off)
    max_new_tokens: int = 0  # L_max of the overlong shaping


@dataclass(frozen=True)
class Assembled:
    """A train batch plus what was computed on the way (for metrics and replay)."""

    batch: TrainBatch
    rewards_B: torch.Tensor  # shaped rewards of all scored samples
    adv_B: torch.Tensor  # advantages of all scored samples (before the keep filter)
    kept_B: torch.Tensor  # bool, which scored samples went into the batch


def group_index(samples: tuple[Sample, ...]) -> torch.Tensor:
    """Index of each sample's (prompt_id, source) group, in order of first appearance. [B]."""
    ids: dict[tuple[str, str], int] = {}
    return torch.tensor([ids.setdefault((s.prompt_id, s.source), len(ids)) for s in samples],
                        dtype=torch.long)


def shaped_rewards(scored: ScoredBatch, spec: AdvantageSpec) -> torch.Tensor:
    rewards_B = torch.tensor(scored.rewards, dtype=torch.float32)
    if spec.overlong_cache_len > 0:
        resp_len_B = torch.tensor([len(s.response_token_ids) for s in scored.rollout.samples])
        rewards_B = rewards_B + overlong_penalty(resp_len_B, spec.max_new_tokens, spec.overlong_cache_len)
    return rewards_B


def assemble(scored: ScoredBatch, directives: ControlDirectives, spec: AdvantageSpec,
             use_rollout_logprobs: bool = False) -> Assembled:
    """Advantages, keep rules and per-prompt entropy coefficients -> one padded TrainBatch."""
    samples = scored.rollout.samples
    rewards_B = shaped_rewards(scored, spec)
    adv_B = compute_advantages(rewards_B, group_index(samples), spec.mode, ddof=spec.ddof,
                               beta_pos=spec.beta_pos, beta_neg=spec.beta_neg)
    explore_B = torch.tensor([s.source == "explore" for s in samples], dtype=torch.bool)
    kept_B = torch.where(explore_B, keep_mask(adv_B, directives.keep_rule_explore),
                         keep_mask(adv_B, directives.keep_rule_regular))
    coef_by_prompt = dict(zip(directives.prompt_ids, directives.entropy_coef))
    index = [i for i in range(len(samples)) if bool(kept_B[i])]
    batch = pad_samples([samples[i] for i in index], adv_B[index],
                        [coef_by_prompt.get(samples[i].prompt_id, 0.0) for i in index],
                        index, scored.policy_version, use_rollout_logprobs)
    return Assembled(batch=batch, rewards_B=rewards_B, adv_B=adv_B, kept_B=kept_B)


def pad_samples(samples: list[Sample], adv_B: torch.Tensor, coef_B: list[float], index: list[int],
                policy_version: int, use_rollout_logprobs: bool) -> TrainBatch:
    """Right-padded prompt+response token tensors; the loss mask covers response tokens only.

    Position t of the [B, T-1] tensors is the prediction of token t+1, so response token j of a
    sample with prompt length L sits at column L - 1 + j.
    """
    B = len(samples)
    T = max((len(s.prompt_token_ids) + len(s.response_token_ids) for s in samples), default=2)
    input_ids_BT = torch.zeros(B, T, dtype=torch.long)
    attention_mask_BT = torch.zeros(B, T, dtype=torch.long)
    loss_mask_BT = torch.zeros(B, T - 1, dtype=torch.float32)
    old_logp_BT = torch.zeros(B, T - 1, dtype=torch.float32)
    for b, s in enumerate(samples):
        L, R = len(s.prompt_token_ids), len(s.response_token_ids)
        input_ids_BT[b, :L + R] = torch.tensor(s.prompt_token_ids + s.response_token_ids)
        attention_mask_BT[b, :L + R] = 1
        loss_mask_BT[b, L - 1:L - 1 + R] = 1.0
        old_logp_BT[b, L - 1:L - 1 + R] = torch.tensor(s.response_logprobs, dtype=torch.float32)
    return TrainBatch(
        input_ids_BT=input_ids_BT, attention_mask_BT=attention_mask_BT, loss_mask_BT=loss_mask_BT,
        old_logp_BT=old_logp_BT if use_rollout_logprobs else None,
        adv_B=adv_B.to(torch.float32).reshape(B), entropy_coef_B=torch.tensor(coef_B, dtype=torch.float32),
        temperature_B=torch.tensor([s.temperature for s in samples], dtype=torch.float32),
        sample_index_B=torch.tensor(index, dtype=torch.long), policy_version=policy_version,
        global_num_tokens=int(loss_mask_BT.sum().item()),
        global_num_seqs=int((loss_mask_BT.sum(dim=1) > 0).sum().item()),
    )


def shard(batch: TrainBatch, num_shards: int) -> list[TrainBatch]:
    """Split rows round-robin over ranks; every shard keeps the global counts of the whole batch."""
    return [batch.select(torch.arange(r, batch.batch_size, num_shards)) for r in range(num_shards)]
