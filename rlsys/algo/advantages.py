"""Group-relative, sequence-level advantages A_i from verifier rewards (docs/algorithms.md#advantage-modes).

Samples are grouped by ``group_B`` (one group per prompt, or per (prompt, source)); groups may have
different sizes. Vectorised with index_add/scatter_reduce. Pure torch: must not import ray, vllm,
deepspeed or rlsys.config.

Deliberate choices and departures:
- grpo_std divides by ``std + eps`` (eps = 1e-6) like verl/EasyR1/UEC-RL [P-code]; ``ddof`` picks the
  population (0) or unbiased (1, torch.std's default and UEC-RL's) std. State which one a run uses.
- Degenerate groups (all rewards equal, including groups of one sample) get exactly 0 in every mode,
  not ``0 / (0 + eps)`` rounding noise; for asym_power/sign "degenerate" means p in {0, 1}.
- [C] asym_power and sign binarise rewards at 0.5 (``R >= 0.5`` is correct): AsymGRPO defines A only
  for binary rewards. ``sign`` is asym_power with beta_pos = beta_neg = 0 (+1 correct, -1 wrong).
- mean_only is Dr.GRPO's ``R_i - mean R`` (no std division).
"""
from __future__ import annotations

import torch

ADV_MODES = ("grpo_std", "mean_only", "asym_power", "sign")


def _dense_groups(group_B: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Map arbitrary group ids to 0..G-1 (so ids need not be contiguous)."""
    _, inverse_B = torch.unique(group_B, return_inverse=True)
    num_groups = int(inverse_B.max().item()) + 1 if inverse_B.numel() else 0
    return inverse_B, num_groups


def _group_sum(x_B: torch.Tensor, g_B: torch.Tensor, num_groups: int) -> torch.Tensor:
    return torch.zeros(num_groups, dtype=x_B.dtype, device=x_B.device).index_add_(0, g_B, x_B)


def _group_is_constant(x_B: torch.Tensor, g_B: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Per-sample flag: every reward of this sample's group is equal. Bool [B]."""
    hi = torch.full((num_groups,), -torch.inf, dtype=x_B.dtype, device=x_B.device)
    lo = torch.full((num_groups,), torch.inf, dtype=x_B.dtype, device=x_B.device)
    hi = hi.scatter_reduce(0, g_B, x_B, reduce="amax")
    lo = lo.scatter_reduce(0, g_B, x_B, reduce="amin")
    return (hi == lo)[g_B]


def group_mean_std(rewards_B: torch.Tensor, group_B: torch.Tensor, ddof: int = 0):
    """Per-sample (group mean, group std with ``ddof``, group size), each [B], float64.

    A group of size <= ddof has std 0 (its divisor is clamped to 1 to stay finite).
    """
    g_B, num_groups = _dense_groups(group_B)
    r_B = rewards_B.to(torch.float64)
    count_G = _group_sum(torch.ones_like(r_B), g_B, num_groups)
    mean_G = _group_sum(r_B, g_B, num_groups) / count_G
    dev_B = r_B - mean_G[g_B]
    var_G = _group_sum(dev_B * dev_B, g_B, num_groups) / (count_G - ddof).clamp(min=1.0)
    return mean_G[g_B], var_G.sqrt()[g_B], count_G[g_B]


def _asym_power(r_B, g_B, num_groups, beta_pos: float, beta_neg: float) -> torch.Tensor:
    """A+ = ((1-p)/p)^beta_pos for correct, A- = -(p/(1-p))^beta_neg for wrong; 0 if p in {0,1}."""
    correct_B = r_B >= 0.5
    c_B = correct_B.to(torch.float64)
    p_B = (_group_sum(c_B, g_B, num_groups) / _group_sum(torch.ones_like(c_B), g_B, num_groups))[g_B]
    degenerate_B = (p_B <= 0.0) | (p_B >= 1.0)
    safe_p_B = torch.where(degenerate_B, torch.full_like(p_B, 0.5), p_B)
    pos_B = ((1.0 - safe_p_B) / safe_p_B) ** beta_pos
    neg_B = -((safe_p_B / (1.0 - safe_p_B)) ** beta_neg)
    adv_B = torch.where(correct_B, pos_B, neg_B)
    return torch.where(degenerate_B, torch.zeros_like(adv_B), adv_B)


def compute_advantages(rewards_B: torch.Tensor, group_B: torch.Tensor, mode: str, ddof: int = 0,
                       beta_pos: float = 0.9, beta_neg: float = 0.4, eps: float = 1e-6) -> torch.Tensor:
    """Sequence-level advantage of each sample from the rewards of its group. -> adv_B [B].

    rewards_B float [B]; group_B long [B] (group id of each sample). Modes: ``grpo_std``
    ((R - mean)/(std_ddof + eps)), ``mean_only`` (R - mean), ``asym_power`` (AsymGRPO with
    beta_pos/beta_neg), ``sign`` (beta = 0). Output dtype: rewards' float dtype (float32 for ints).
    Degenerate groups give exactly 0 and the result is always finite.
    """
    if mode not in ADV_MODES:
        raise ValueError(f"advantage mode {mode!r}: must be one of {ADV_MODES}")
    if ddof not in (0, 1):
        raise ValueError(f"ddof={ddof}: must be 0 or 1")
    if rewards_B.shape != group_B.shape or rewards_B.dim() != 1:
        raise ValueError(f"rewards {tuple(rewards_B.shape)} and groups {tuple(group_B.shape)} must be [B]")
    out_dtype = rewards_B.dtype if rewards_B.is_floating_point() else torch.float32
    if rewards_B.numel() == 0:
        return torch.zeros(0, dtype=out_dtype, device=rewards_B.device)
    g_B, num_groups = _dense_groups(group_B)
    r_B = rewards_B.to(torch.float64)
    if mode in ("asym_power", "sign"):
        bp, bn = (beta_pos, beta_neg) if mode == "asym_power" else (0.0, 0.0)
        return _asym_power(r_B, g_B, num_groups, bp, bn).to(out_dtype)
    mean_B, std_B, _ = group_mean_std(r_B, group_B, ddof)
    adv_B = r_B - mean_B
    if mode == "grpo_std":
        adv_B = adv_B / (std_B + eps)
    degenerate_B = _group_is_constant(r_B, g_B, num_groups)
    return torch.where(degenerate_B, torch.zeros_like(adv_B), adv_B).to(out_dtype)
