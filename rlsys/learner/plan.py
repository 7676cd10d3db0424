"""How one train step is cut into mini-batches and micro-batches, identically on every rank.

Each rank sends (sample_index, response tokens) of its shard to all others once; from that every rank
builds the same global plan: mini-batch k holds the k-th slice of the batch ordered by sample index
(whatever the sharding), every rank runs the same number of micro-batches (padding with empty ones)
and the same number of LM-head chunks per micro-batch, so ZeRO's collectives line up. Pure Python and
torch; must not import deepspeed or ray.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from rlsys.learner.forward import chunks_needed


@dataclass(frozen=True)
class MicroBatch:
    rows: tuple[int, ...]  # rows of this rank's shard; empty -> a zero-weight placeholder pass
    num_chunks: int  # LM-head calls, the max over ranks


@dataclass(frozen=True)
class MiniBatch:
    micro: tuple[MicroBatch, ...]
    num_tokens: int  # global response tokens of the mini-batch (the loss's token denominator)
    num_seqs: int  # global samples with >= 1 response token (the loss's sequence denominator)


@dataclass(frozen=True)
class ShardInfo:
    """What one rank tells the others about its shard: per row, sample index and token count."""

    sample_index: tuple[int, ...]
    num_tokens: tuple[int, ...]
    stored_old_logp: bool = False  # the shard carries its old log-probs (TrainBatch.old_logp_BT is set)


BEHAVIOUR_PASS_MODES = ("auto", "always")


def needs_behaviour_pass(mode: str, num_mini_batches: int, shards: list[ShardInfo]) -> bool:
    """Whether ``train_step`` runs the no-grad behaviour pass before its update (True), or takes the
    old log-probs and the pre-update entropy statistics from the training forward, detached (False).

    Skipping is exact only when the update is on-policy: the training forward then runs on the very
    weights the pass would and on the same micro-batches (one mini-batch holds the whole shard in row
    order, as ``plan_pass``), so its log-probs are the old log-probs bit for bit (ratio exactly 1) and
    its entropies and log-probs are the pre-update ones the statistics report. Case by case:

    - ``learner.behaviour_pass=always``: pass (the two-pass baseline, for benchmarks and tests).
    - ``learner.mini_batches_per_step > 1``: pass. Mini-batch k > 0 is forwarded after k optimiser
      steps, no longer by the policy the old log-probs and the entropy statistics are defined on.
    - Epochs: every sample is in exactly one mini-batch of a step and there is no epochs setting, so
      one mini-batch is one epoch of one optimiser step.
    - Old log-probs stored in the batch on any rank: pass. They are vLLM's from sampling
      (``learner.old_logprob_source=rollout``) or, for a UEC-RL replay update, vLLM's or the
      learner's from when the row was first trained: the ratio is against an earlier policy.
    - Old log-probs from the learner (``old_logprob_source=learner``, the default), UEC-RL
      batch-buffer rows included: no pass. Rows the buffer held over were sampled by an earlier
      policy (``TrainRow.sample.policy_version``), but under this source their old log-probs are by
      definition the current weights' (``BatchStage``; the authors' code), which is what the
      training forward computes; vLLM's stored ones come only with ``rollout``, the case above.
    - A reference model (``algo.ref_kl_coef > 0``): no effect. Its log-probs come from its own frozen
      module, in a reference-only pass when the behaviour pass is skipped.

    Decided from every rank's ShardInfo, so all ranks agree (their ZeRO collectives must line up).
    """
    if mode not in BEHAVIOUR_PASS_MODES:
        raise ValueError(f"behaviour_pass={mode!r}: must be one of {BEHAVIOUR_PASS_MODES}")
    return mode == "always" or num_mini_batches > 1 or any(s.stored_old_logp for s in shards)


def plan_pass(shards: list[ShardInfo], rank: int, micro_batch_size: int, chunk_tokens: int
              ) -> tuple[MicroBatch, ...]:
    """Micro-batches over this rank's whole shard (the no-grad old-logprob pass)."""
    rows = [list(range(len(s.sample_index))) for s in shards]
    return _micro_batches(shards, rows, rank, micro_batch_size, chunk_tokens)


def plan_update(shards: list[ShardInfo], rank: int, num_mini_batches: int, micro_batch_size: int,
                chunk_tokens: int) -> tuple[MiniBatch, ...]:
    """``num_mini_batches`` mini-batches: contiguous slices of the batch sorted by sample index.

    Ties in sample index (should not happen) break by (rank, row), so the plan is deterministic.
    Slices differ in size by at most one sample (``numpy.array_split`` rule); a mini-batch may be
    empty when the batch has fewer samples than ``num_mini_batches``.
    """
    order = sorted((s.sample_index[i], r, i) for r, s in enumerate(shards) for i in range(len(s.sample_index)))
    total = len(order)
    out = []
    for k in range(num_mini_batches):
        lo = k * (total // num_mini_batches) + min(k, total % num_mini_batches)
        hi = lo + total // num_mini_batches + (1 if k < total % num_mini_batches else 0)
        rows = [sorted(i for _, r, i in order[lo:hi] if r == rr) for rr in range(len(shards))]
        num_tokens = sum(shards[r].num_tokens[i] for _, r, i in order[lo:hi])
        num_seqs = sum(1 for _, r, i in order[lo:hi] if shards[r].num_tokens[i] > 0)
        micro = _micro_batches(shards, rows, rank, micro_batch_size, chunk_tokens)
        out.append(MiniBatch(micro=micro, num_tokens=num_tokens, num_seqs=num_seqs))
    return tuple(out)


def _micro_batches(shards: list[ShardInfo], rows_by_rank: list[list[int]], rank: int,
                   micro_batch_size: int, chunk_tokens: int) -> tuple[MicroBatch, ...]:
    n_micro = max(1, max(math.ceil(len(rows) / micro_batch_size) for rows in rows_by_rank))
    micro = []
    for m in range(n_micro):
        pieces = [rows[m * micro_batch_size:(m + 1) * micro_batch_size] for rows in rows_by_rank]
        num_chunks = max(chunks_needed(sum(shards[r].num_tokens[i] for i in piece), chunk_tokens)
                         for r, piece in enumerate(pieces))
        micro.append(MicroBatch(rows=tuple(pieces[rank]), num_chunks=num_chunks))
    return tuple(micro)
