"""Batch assembly: scored rollouts + controller directives -> padded ``TrainBatch`` tensors.

Pure: records and torch in, records out. Group advantages are computed per (prompt, source), so
UEC-RL's exploration samples are normalised within their own extra group (docs/algorithms.md#uec_rl, step 3).
Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from rlsys.algo.advantages import AdvantageParams, GroupAdvantages, group_advantages
from rlsys.algo.shaping import keep_mask, overlong_penalty, overlong_positive_mask
from rlsys.types import CORRECT_THRESHOLD, ControlDirectives, Sample, ScoredBatch, TrainBatch


@dataclass(frozen=True)
class AdvantageSpec:
    """How assembly turns verifier scores into advantages (docs/algorithms.md#advantage-modes, #dapo)."""

    mode: str = "grpo_std"  # a key of rlsys.algo.advantages.ADVANTAGE_MODES
    ddof: int = 0
    beta_pos: float = 0.9
    beta_neg: float = 0.4
    threshold: float = CORRECT_THRESHOLD  # asym_power/sign: R >= threshold is correct
    nonbinary: str = "binarise"  # asym_power/sign on a group with a reward outside {0, 1}: binarise | grpo
    overlong_cache_len: int = 0  # DAPO soft overlong window L_cache in tokens (0 = off; rlsys.config.overlong_window)
    max_new_tokens: int = 0  # L_max of the overlong shaping

    @property
    def params(self) -> AdvantageParams:
        return AdvantageParams(ddof=self.ddof, beta_pos=self.beta_pos, beta_neg=self.beta_neg,
                               threshold=self.threshold, nonbinary=self.nonbinary)


@dataclass(frozen=True)
class TrainRow:
    """One kept sample with what assembly computed for it: a row of a TrainBatch, and what UEC-RL's
    batch and replay buffers hold between steps."""

    sample: Sample
    adv: float
    coef: float  # lambda_q of its prompt
    temperature: float  # the learner divides the logits by this (docs/algorithms.md#old-log-probs-and-temperature)
    reward: float  # verifier score (unshaped), for the entropy split by outcome
    group_accuracy: float  # p_q of its prompt's regular pass, for the entropy split by difficulty
    old_logp: Optional[tuple[float, ...]] = None  # stored old log-probs, one per response token


@dataclass(frozen=True)
class Assembled:
    """A train batch plus what was computed on the way (for metrics and replay)."""

    batch: TrainBatch
    rewards_B: torch.Tensor  # shaped rewards of all scored samples
    adv_B: torch.Tensor  # advantages of all scored samples (before the keep filter)
    kept_B: torch.Tensor  # bool, which scored samples went into the batch
    rows: tuple[TrainRow, ...] = ()  # the kept samples, aligned with the batch's rows
    dropped_overlong_positive: int = 0  # samples the keep rules kept but drop_overlong_positive removed
    advantages: Optional[GroupAdvantages] = None  # adv_B with its per-group counts (AsymGRPO's fallback)


@dataclass(frozen=True)
class Trained:
    """What the learner trains on in one step: ``rows[b]`` is row b of ``batch``. ``dropped``: rows
    UEC-RL's batch buffer evicted on overflow while filling it (0 without the buffer)."""

    batch: TrainBatch
    rows: tuple[TrainRow, ...]
    dropped: int = 0

    def rows_by_index(self) -> dict[int, TrainRow]:
        """Rows by ``sample_index`` (the key of ``LearnerStats``' per-sample vectors)."""
        return dict(zip(self.batch.sample_index_B.tolist(), self.rows))


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
    """Advantages, keep rules and per-prompt entropy coefficients -> one padded TrainBatch.

    ``directives.drop_overlong_positive`` also drops truncated samples with A > 0;
    ``directives.explore_score_temperature`` (when set) is the temperature the learner scores
    exploration samples at, instead of the one they were drawn at (UEC-RL's code-compat mode).
    """
    samples = scored.rollout.samples
    rewards_B = shaped_rewards(scored, spec)
    advantages = group_advantages(rewards_B, group_index(samples), spec.mode, spec.params)
    adv_B = advantages.adv_B
    explore_B = torch.tensor([s.source == "explore" for s in samples], dtype=torch.bool)
    kept_B = torch.where(explore_B, keep_mask(adv_B, directives.keep_rule_explore),
                         keep_mask(adv_B, directives.keep_rule_regular))
    dropped = 0
    if directives.drop_overlong_positive:
        overlong_B = overlong_positive_mask(adv_B, torch.tensor([s.truncated for s in samples], dtype=torch.bool))
        dropped = int((kept_B & overlong_B).sum())
        kept_B = kept_B & ~overlong_B
    coef_by_prompt = dict(zip(directives.prompt_ids, directives.entropy_coef))
    p_by_prompt = {g.prompt_id: g.n_correct / g.n if g.n else 0.0 for g in scored.groups}
    rewards = scored.rewards
    index = [i for i in range(len(samples)) if bool(kept_B[i])]
    rows = tuple(TrainRow(sample=samples[i], adv=float(adv_B[i]), coef=coef_by_prompt.get(samples[i].prompt_id, 0.0),
                          temperature=score_temperature(samples[i], directives), reward=rewards[i],
                          group_accuracy=p_by_prompt.get(samples[i].prompt_id, 0.0))
                 for i in index)
    batch = pad_rows(rows, index, scored.policy_version, use_rollout_logprobs)
    return Assembled(batch=batch, rewards_B=rewards_B, adv_B=adv_B, kept_B=kept_B, rows=rows,
                     dropped_overlong_positive=dropped, advantages=advantages)


def score_temperature(sample: Sample, directives: ControlDirectives) -> float:
    """The temperature the learner scores ``sample`` at: the one it was drawn at, except exploration
    samples when the directives name another (``explore_score_temperature``)."""
    if sample.source == "explore" and directives.explore_score_temperature is not None:
        return float(directives.explore_score_temperature)
    return sample.temperature


def pad_rows(rows: Sequence[TrainRow], index: Sequence[int], policy_version: int,
             use_rollout_logprobs: bool) -> TrainBatch:
    """Right-padded prompt+response token tensors; the loss mask covers response tokens only.

    Position t of the [B, T-1] tensors is the prediction of token t+1, so response token j of a
    sample with prompt length L sits at column L - 1 + j. ``index`` becomes ``sample_index_B``.
    Old log-probs: a row's stored ``old_logp`` if it has one, else (``use_rollout_logprobs``) the
    log-probs vLLM sampled it with; without either, ``old_logp_BT`` is None and the learner recomputes.
    """
    B = len(rows)
    stored = [r.old_logp is not None for r in rows]
    if any(stored) and not (all(stored) or use_rollout_logprobs):
        raise ValueError("pad_rows: some rows carry stored old log-probs and the others have none to use")
    T = max((len(r.sample.prompt_token_ids) + len(r.sample.response_token_ids) for r in rows), default=2)
    input_ids_BT = torch.zeros(B, T, dtype=torch.long)
    attention_mask_BT = torch.zeros(B, T, dtype=torch.long)
    loss_mask_BT = torch.zeros(B, T - 1, dtype=torch.float32)
    old_logp_BT = torch.zeros(B, T - 1, dtype=torch.float32)
    for b, row in enumerate(rows):
        s = row.sample
        L, R = len(s.prompt_token_ids), len(s.response_token_ids)
        old = s.response_logprobs if row.old_logp is None else row.old_logp
        if len(old) != R:
            raise ValueError(f"pad_rows: row {b} has {len(old)} old log-probs for {R} response tokens")
        input_ids_BT[b, :L + R] = torch.tensor(s.prompt_token_ids + s.response_token_ids)
        attention_mask_BT[b, :L + R] = 1
        loss_mask_BT[b, L - 1:L - 1 + R] = 1.0
        old_logp_BT[b, L - 1:L - 1 + R] = torch.tensor(old, dtype=torch.float32)
    return TrainBatch(
        input_ids_BT=input_ids_BT, attention_mask_BT=attention_mask_BT, loss_mask_BT=loss_mask_BT,
        old_logp_BT=old_logp_BT if use_rollout_logprobs or (B and all(stored)) else None,
        adv_B=torch.tensor([r.adv for r in rows], dtype=torch.float32).reshape(B),
        entropy_coef_B=torch.tensor([r.coef for r in rows], dtype=torch.float32),
        temperature_B=torch.tensor([r.temperature for r in rows], dtype=torch.float32),
        sample_index_B=torch.tensor(list(index), dtype=torch.long), policy_version=policy_version,
        global_num_tokens=int(loss_mask_BT.sum().item()),
        global_num_seqs=int((loss_mask_BT.sum(dim=1) > 0).sum().item()),
    )


def shard(batch: TrainBatch, num_shards: int) -> list[TrainBatch]:
    """Split rows round-robin over ranks; every shard keeps the global counts of the whole batch."""
    return [batch.select(torch.arange(r, batch.batch_size, num_shards)) for r in range(num_shards)]
