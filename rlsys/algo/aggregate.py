"""Sharding-invariant reduction of a per-token loss to a scalar (docs/algorithms.md#loss-aggregation).

Every rank (and every micro-batch) computes its LOCAL sum divided by GLOBAL counts, so summing the
results over ranks/micro-batches gives exactly the unsharded value, whatever the split. Pure torch:
must not import ray, vllm, deepspeed or rlsys.config.

Contract for the global counts (over everything whose gradients are summed into one optimiser step):
``global_num_tokens`` = number of mask-1 tokens; ``global_num_seqs`` = number of sequences (the
batch assembler counts sequences with >= 1 token; a sequence with no tokens contributes 0 anyway).
"""
from __future__ import annotations

from typing import Callable

import torch

# (masked loss [B, T], mask [B, T] in the loss dtype, N_global, S_global, L_c) -> this rank's share
Reduction = Callable[[torch.Tensor, torch.Tensor, int, int, int], torch.Tensor]


def _token_mean(masked_BT, mask_BT, global_num_tokens, global_num_seqs, const_len):
    """DAPO: sum_{i,t} l m / N_global."""
    return masked_BT.sum() / global_num_tokens


def _seq_mean_token_mean(masked_BT, mask_BT, global_num_tokens, global_num_seqs, const_len):
    """GRPO: sum_i (sum_t l m / |o_i|) / S_global, |o_i| = the row's own token count (a whole
    sequence always lives on one rank)."""
    len_B = mask_BT.sum(dim=-1).clamp(min=1.0)
    return (masked_BT.sum(dim=-1) / len_B).sum() / global_num_seqs


def _seq_sum_const(masked_BT, mask_BT, global_num_tokens, global_num_seqs, const_len):
    """Dr.GRPO: sum_{i,t} l m / (S_global * L_c)."""
    return masked_BT.sum() / (global_num_seqs * const_len)


# algo.loss_agg -> reduction; rlsys.config.LOSS_AGG_MODES mirrors the keys (tests/unit/test_algo_aggregate.py)
AGG_MODES: dict[str, Reduction] = {
    "token_mean": _token_mean,
    "seq_mean_token_mean": _seq_mean_token_mean,
    "seq_sum_const": _seq_sum_const,
}


def _check_counts(mode: str, global_num_tokens: int, global_num_seqs: int, const_len: int) -> None:
    if mode not in AGG_MODES:
        raise ValueError(f"aggregation mode {mode!r}: must be one of {tuple(AGG_MODES)}")
    if mode == "token_mean" and global_num_tokens <= 0:
        raise ValueError(f"global_num_tokens={global_num_tokens}: must be > 0 for token_mean")
    if mode != "token_mean" and global_num_seqs <= 0:
        raise ValueError(f"global_num_seqs={global_num_seqs}: must be > 0 for {mode}")
    if mode == "seq_sum_const" and const_len <= 0:
        raise ValueError(f"const_len={const_len}: seq_sum_const needs the constant length L_c > 0")


def aggregate(loss_BT: torch.Tensor, mask_BT: torch.Tensor, mode: str, global_num_tokens: int,
              global_num_seqs: int, const_len: int = 0) -> torch.Tensor:
    """This rank's additive share of the aggregated loss (a 0-dim tensor), by ``AGG_MODES[mode]``.

    loss_BT and mask_BT are [B, T]; mask is 0/1 (any dtype).
    """
    _check_counts(mode, global_num_tokens, global_num_seqs, const_len)
    m_BT = mask_BT.to(loss_BT.dtype)
    return AGG_MODES[mode](loss_BT * m_BT, m_BT, global_num_tokens, global_num_seqs, const_len)


def masked_global_sum(x_BT: torch.Tensor, mask_BT: torch.Tensor, denominator: int) -> torch.Tensor:
    """Detached ``sum(x * mask) / denominator``: a sharding-additive mean for diagnostics."""
    with torch.no_grad():
        return (x_BT.float() * mask_BT.float()).sum() / max(denominator, 1)
