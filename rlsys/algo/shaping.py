"""Reward shaping and sample/group filters: DAPO overlong shaping and dynamic sampling's group test
(docs/algorithms.md#dapo), UEC-RL keep rules and replay admission (docs/algorithms.md#uec_rl, #directives).

Rules are typed values (``rlsys.types.KeepRule`` / ``AdmitRule``, carried by ``ControlDirectives``);
``KEEP_MASKS`` / ``ADMIT_MASKS`` give each kind's mask. Pure torch/Python: must not import ray, vllm,
deepspeed or rlsys.config.

Deliberate choices and departures:
- [C] UEC-RL's paper keeps exploration samples with A >= 0 (``nonnegative``); rlsys's default is
  ``positive_only`` (A > 0). They differ only on samples with A = 0 (degenerate groups): no policy
  gradient, but they count in token_mean's N and take room in UEC-RL's batch buffer.
- ``nonzero_adv`` tests A != 0 exactly (our advantages are exactly 0 on degenerate groups); the
  authors' code uses |A| > 0.05, available as ``KeepRule("abs_gt", 0.05)``.
- ``overlong_penalty`` with cache_len = 0 is "off" (all zeros), matching the config's 0 = off.
"""
from __future__ import annotations

from typing import Callable

import torch

from rlsys.types import AdmitRule, KeepRule

__all__ = ["ADMIT_MASKS", "AdmitRule", "KEEP_MASKS", "KeepRule", "informative_groups", "keep_mask",
           "overlong_penalty", "overlong_positive_mask", "replay_admit_mask"]

Mask = Callable[[torch.Tensor, float], torch.Tensor]  # (adv_B, threshold) -> bool [B]

# kind -> mask; the keys are exactly the kinds of rlsys.types.KeepKind / AdmitKind (tests/unit/test_algo_shaping.py)
KEEP_MASKS: dict[str, Mask] = {
    "all": lambda adv_B, x: torch.ones_like(adv_B, dtype=torch.bool),
    "nonzero_adv": lambda adv_B, x: adv_B != 0,
    "positive_only": lambda adv_B, x: adv_B > 0,
    "nonnegative": lambda adv_B, x: adv_B >= 0,
    "abs_gt": lambda adv_B, x: adv_B.abs() > x,
}
ADMIT_MASKS: dict[str, Mask] = {
    "none": lambda adv_B, x: torch.zeros_like(adv_B, dtype=torch.bool),
    "positive_gt": lambda adv_B, x: adv_B > x,  # the paper's A > A_0
    "abs_gt": lambda adv_B, x: adv_B.abs() > x,  # the authors' code
}


def overlong_penalty(resp_len_B: torch.Tensor, max_len: int, cache_len: int) -> torch.Tensor:
    """DAPO soft overlong punishment added to the reward. -> float32 [B].

    0 if |y| <= L_max - L_cache; ((L_max - L_cache) - |y|) / L_cache inside the window; -1 from L_max on.
    """
    len_B = resp_len_B.to(torch.float32)
    if cache_len <= 0:
        return torch.zeros_like(len_B)
    if cache_len > max_len:
        raise ValueError(f"cache_len={cache_len} > max_len={max_len}")
    start = float(max_len - cache_len)
    return ((start - len_B) / cache_len).clamp(min=-1.0, max=0.0)


def informative_groups(n_correct_P: torch.Tensor, n_P: torch.Tensor) -> torch.Tensor:
    """DAPO dynamic sampling: True for groups whose accuracy p = n_correct/n is not 0 or 1. Bool [P]."""
    return (n_correct_P > 0) & (n_correct_P < n_P)


def keep_mask(adv_B: torch.Tensor, rule: KeepRule) -> torch.Tensor:
    """Which samples go into the train batch under ``rule``. Bool [B]."""
    return KEEP_MASKS[rule.kind](adv_B, rule.threshold)


def overlong_positive_mask(adv_B: torch.Tensor, truncated_B: torch.Tensor) -> torch.Tensor:
    """UEC-RL's code-only filter: True for truncated responses with A > 0 (these are dropped). Bool [B]."""
    return truncated_B.to(torch.bool) & (adv_B > 0)


def replay_admit_mask(adv_B: torch.Tensor, rule: AdmitRule) -> torch.Tensor:
    """Which trained samples enter the UEC-RL replay buffer under ``rule``. Bool [B]."""
    return ADMIT_MASKS[rule.kind](adv_B, rule.threshold)
