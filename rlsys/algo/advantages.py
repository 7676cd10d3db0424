"""Group-relative, sequence-level advantages A_i from verifier rewards (docs/algorithms.md#advantage-modes).

Samples are grouped by ``group_B`` (one group per prompt, or per (prompt, source)); groups may have
different sizes. Vectorised with index_add/scatter_reduce. The modes are the registry
``ADVANTAGE_MODES`` (name -> function); the config validates ``algo.advantage`` against its keys.
Pure torch: must not import ray, vllm, deepspeed or rlsys.config.

Deliberate choices and departures:
- grpo_std divides by ``std + eps`` (eps = 1e-6) like verl/EasyR1/UEC-RL [P-code]; ``ddof`` picks the
  population (0) or unbiased (1, torch.std's default and UEC-RL's) std. State which one a run uses.
- Degenerate groups (all rewards equal, including groups of one sample) get exactly 0 in every mode,
  not ``0 / (0 + eps)`` rounding noise; for asym_power/sign "degenerate" means p in {0, 1}.
- [C] asym_power and sign are defined for 0/1 rewards only (AsymGRPO). A group with a reward outside
  {0, 1} is either binarised at ``threshold`` (``R >= threshold`` is correct; default
  CORRECT_THRESHOLD, nonbinary="binarise") or given the grpo_std advantage of its rewards
  (nonbinary="grpo"). ``sign`` is asym_power with beta_pos = beta_neg = 0 (+1 correct, -1 wrong).
- mean_only is Dr.GRPO's ``R_i - mean R`` (no std division).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch

from rlsys.types import CORRECT_THRESHOLD

NONBINARY_RULES = ("binarise", "grpo")  # what asym_power/sign do with a group whose rewards are not all 0/1


@dataclass(frozen=True)
class AdvantageParams:
    """The knobs of the advantage modes; each mode reads the ones it needs."""

    ddof: int = 0  # std of grpo_std (and of the asym modes' grpo fallback): 0 population, 1 unbiased
    beta_pos: float = 0.9  # asym_power exponent of correct samples
    beta_neg: float = 0.4  # asym_power exponent of wrong samples
    threshold: float = CORRECT_THRESHOLD  # asym_power/sign: R >= threshold is correct
    nonbinary: str = "binarise"  # asym_power/sign, groups with a reward outside {0, 1}: binarise | grpo
    eps: float = 1e-6  # grpo_std: A = (R - mean) / (std + eps)


@dataclass(frozen=True)
class GroupAdvantages:
    """The advantages of one batch and what the mode did per group.

    ``nonbinary_groups`` / ``fallback_groups`` are counted by the modes that binarise (asym_power,
    sign) and None otherwise: groups with a reward outside {0, 1}, and those of them given the
    grpo_std advantage instead (all of them under nonbinary="grpo", none under "binarise").
    """

    adv_B: torch.Tensor  # [B]
    num_groups: int
    nonbinary_groups: Optional[int] = None
    fallback_groups: Optional[int] = None


# A mode: (rewards_B float64, dense group ids g_B, number of groups, params) -> GroupAdvantages (float64).
AdvantageFn = Callable[[torch.Tensor, torch.Tensor, int, AdvantageParams], GroupAdvantages]


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


def _moments(r_B: torch.Tensor, g_B: torch.Tensor, num_groups: int, ddof: int):
    """Per-sample (group mean, group std with ``ddof``, group size) for dense ids ``g_B``, each [B]."""
    count_G = _group_sum(torch.ones_like(r_B), g_B, num_groups)
    mean_G = _group_sum(r_B, g_B, num_groups) / count_G
    dev_B = r_B - mean_G[g_B]
    var_G = _group_sum(dev_B * dev_B, g_B, num_groups) / (count_G - ddof).clamp(min=1.0)
    return mean_G[g_B], var_G.sqrt()[g_B], count_G[g_B]


def group_mean_std(rewards_B: torch.Tensor, group_B: torch.Tensor, ddof: int = 0):
    """Per-sample (group mean, group std with ``ddof``, group size), each [B], float64.

    A group of size <= ddof has std 0 (its divisor is clamped to 1 to stay finite).
    """
    g_B, num_groups = _dense_groups(group_B)
    return _moments(rewards_B.to(torch.float64), g_B, num_groups, ddof)


def _centred(r_B, g_B, num_groups, params: AdvantageParams, standardise: bool) -> torch.Tensor:
    """R - mean (divided by std + eps when ``standardise``); exactly 0 on constant groups."""
    mean_B, std_B, _ = _moments(r_B, g_B, num_groups, params.ddof)
    adv_B = r_B - mean_B
    if standardise:
        adv_B = adv_B / (std_B + params.eps)
    return torch.where(_group_is_constant(r_B, g_B, num_groups), torch.zeros_like(adv_B), adv_B)


def _grpo_std(r_B, g_B, num_groups, params: AdvantageParams) -> GroupAdvantages:
    return GroupAdvantages(_centred(r_B, g_B, num_groups, params, standardise=True), num_groups)


def _mean_only(r_B, g_B, num_groups, params: AdvantageParams) -> GroupAdvantages:
    return GroupAdvantages(_centred(r_B, g_B, num_groups, params, standardise=False), num_groups)


def _power(correct_B, g_B, num_groups, beta_pos: float, beta_neg: float) -> torch.Tensor:
    """A+ = ((1-p)/p)^beta_pos for correct, A- = -(p/(1-p))^beta_neg for wrong; 0 if p in {0,1}."""
    c_B = correct_B.to(torch.float64)
    p_B = (_group_sum(c_B, g_B, num_groups) / _group_sum(torch.ones_like(c_B), g_B, num_groups))[g_B]
    degenerate_B = (p_B <= 0.0) | (p_B >= 1.0)
    safe_p_B = torch.where(degenerate_B, torch.full_like(p_B, 0.5), p_B)
    pos_B = ((1.0 - safe_p_B) / safe_p_B) ** beta_pos
    neg_B = -((safe_p_B / (1.0 - safe_p_B)) ** beta_neg)
    adv_B = torch.where(correct_B, pos_B, neg_B)
    return torch.where(degenerate_B, torch.zeros_like(adv_B), adv_B)


def _asym(r_B, g_B, num_groups, params: AdvantageParams, beta_pos: float, beta_neg: float) -> GroupAdvantages:
    """AsymGRPO on binarised rewards; groups with a reward outside {0, 1} per ``params.nonbinary``."""
    adv_B = _power(r_B >= params.threshold, g_B, num_groups, beta_pos, beta_neg)
    off_B = ((r_B != 0.0) & (r_B != 1.0)).to(torch.float64)
    nonbinary_G = _group_sum(off_B, g_B, num_groups) > 0
    fallback = 0
    if params.nonbinary == "grpo":
        adv_B = torch.where(nonbinary_G[g_B], _centred(r_B, g_B, num_groups, params, standardise=True), adv_B)
        fallback = int(nonbinary_G.sum())
    return GroupAdvantages(adv_B, num_groups, nonbinary_groups=int(nonbinary_G.sum()), fallback_groups=fallback)


def _asym_power(r_B, g_B, num_groups, params: AdvantageParams) -> GroupAdvantages:
    return _asym(r_B, g_B, num_groups, params, params.beta_pos, params.beta_neg)


def _sign(r_B, g_B, num_groups, params: AdvantageParams) -> GroupAdvantages:
    return _asym(r_B, g_B, num_groups, params, 0.0, 0.0)


ADVANTAGE_MODES: dict[str, AdvantageFn] = {
    "grpo_std": _grpo_std,  # (R - mean) / (std_ddof + eps)
    "mean_only": _mean_only,  # R - mean (Dr.GRPO)
    "asym_power": _asym_power,  # AsymGRPO with beta_pos / beta_neg
    "sign": _sign,  # AsymGRPO with beta = 0: +1 correct, -1 wrong
}
ADV_MODES = tuple(ADVANTAGE_MODES)
BINARISING_MODES = ("asym_power", "sign")  # the modes that read threshold and nonbinary


def check_params(mode: str, params: AdvantageParams) -> None:
    """Raise ValueError naming the valid choices for an unknown mode or a bad parameter."""
    if mode not in ADVANTAGE_MODES:
        raise ValueError(f"advantage mode {mode!r}: must be one of {sorted(ADVANTAGE_MODES)}")
    if params.ddof not in (0, 1):
        raise ValueError(f"ddof={params.ddof}: must be 0 or 1")
    if params.nonbinary not in NONBINARY_RULES:
        raise ValueError(f"nonbinary={params.nonbinary!r}: must be one of {list(NONBINARY_RULES)}")
    if not 0.0 < params.threshold <= 1.0:
        raise ValueError(f"threshold={params.threshold}: must be in (0, 1] (so that 1 is correct and 0 wrong)")


def group_advantages(rewards_B: torch.Tensor, group_B: torch.Tensor, mode: str,
                     params: AdvantageParams = AdvantageParams()) -> GroupAdvantages:
    """Sequence-level advantage of each sample from the rewards of its group, with per-group counts.

    rewards_B float [B]; group_B long [B] (group id of each sample); ``mode`` a key of
    ``ADVANTAGE_MODES``. ``adv_B`` has the rewards' float dtype (float32 for ints). Degenerate groups
    give exactly 0 and the result is always finite.
    """
    check_params(mode, params)
    if rewards_B.shape != group_B.shape or rewards_B.dim() != 1:
        raise ValueError(f"rewards {tuple(rewards_B.shape)} and groups {tuple(group_B.shape)} must be [B]")
    out_dtype = rewards_B.dtype if rewards_B.is_floating_point() else torch.float32
    g_B, num_groups = _dense_groups(group_B)
    result = ADVANTAGE_MODES[mode](rewards_B.to(torch.float64), g_B, num_groups, params)
    return replace(result, adv_B=result.adv_B.to(out_dtype))


def compute_advantages(rewards_B: torch.Tensor, group_B: torch.Tensor, mode: str, **params) -> torch.Tensor:
    """``group_advantages(...).adv_B`` with the ``AdvantageParams`` fields as keywords. -> adv_B [B]."""
    return group_advantages(rewards_B, group_B, mode, AdvantageParams(**params)).adv_B
