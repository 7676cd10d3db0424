"""Reward shaping and sample/group filters: DAPO overlong shaping and dynamic sampling
(docs/algorithms.md#dapo), UEC-RL keep rules and replay admission (docs/algorithms.md#uec_rl, #directives).

Rules are strings (as carried by ``ControlDirectives``): keep ``all | nonzero_adv | positive_only |
nonnegative | abs_gt:X``, replay ``none | positive_gt:X | abs_gt:X``. Pure torch/Python: must not import ray,
vllm, deepspeed or rlsys.config.

Deliberate choices and departures:
- [C] UEC-RL's paper keeps exploration samples with A >= 0 (``nonnegative``); rlsys's default is
  ``positive_only`` (A > 0). They differ only on samples with A = 0 (degenerate groups): no policy
  gradient, but they count in token_mean's N and take room in UEC-RL's batch buffer.
- ``nonzero_adv`` tests A != 0 exactly (our advantages are exactly 0 on degenerate groups); the
  authors' code uses |A| > 0.05, available as ``abs_gt:0.05``.
- ``overlong_penalty`` with cache_len = 0 is "off" (all zeros), matching the config's 0 = off.
"""
from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import torch

KEEP_RULES = ("all", "nonzero_adv", "positive_only", "nonnegative", "abs_gt:X")
REPLAY_RULES = ("none", "positive_gt:X", "abs_gt:X")
Group = TypeVar("Group")


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


def fill_informative(draw: Callable[[int], Sequence[tuple[Group, int, int]]], target: int,
                     max_rounds: int) -> tuple[list[Group], bool]:
    """Dynamic sampling loop: draw groups until ``target`` informative ones are collected.

    ``draw(k)`` returns up to k new ``(group, n_correct, n)`` (an empty result means the source is
    empty). Groups with p in {0, 1} are dropped, never emitted. Returns (exactly ``target`` groups,
    False), or (fewer, True) when ``max_rounds`` draws or the source are exhausted.
    """
    kept: list[Group] = []
    if target <= 0:
        return kept, False
    for _ in range(max_rounds):
        drawn = draw(target - len(kept))
        kept += [g for g, n_correct, n in drawn if 0 < n_correct < n]
        if len(kept) >= target:
            return kept[:target], False
        if not drawn:
            break
    return kept, True


def _parse_rule(rule: str, allowed: tuple[str, ...]) -> tuple[str, float]:
    name, _, arg = rule.partition(":")
    if f"{name}:X" in allowed:
        try:
            return name, float(arg)
        except ValueError:
            raise ValueError(f"rule {rule!r}: needs a number after ':' (one of {allowed})") from None
    if rule in allowed:
        return rule, 0.0
    raise ValueError(f"rule {rule!r}: must be one of {allowed}")


def keep_mask(adv_B: torch.Tensor, rule: str) -> torch.Tensor:
    """Which samples go into the train batch. Bool [B].

    ``all``; ``nonzero_adv`` (A != 0); ``positive_only`` (A > 0); ``nonnegative`` (A >= 0);
    ``abs_gt:X`` (|A| > X).
    """
    name, x = _parse_rule(rule, KEEP_RULES)
    if name == "all":
        return torch.ones_like(adv_B, dtype=torch.bool)
    if name == "nonzero_adv":
        return adv_B != 0
    if name == "positive_only":
        return adv_B > 0
    if name == "nonnegative":
        return adv_B >= 0
    return adv_B.abs() > x


def overlong_positive_mask(adv_B: torch.Tensor, truncated_B: torch.Tensor) -> torch.Tensor:
    """UEC-RL's code-only filter: True for truncated responses with A > 0 (these are dropped). Bool [B]."""
    return truncated_B.to(torch.bool) & (adv_B > 0)


def replay_admit_mask(adv_B: torch.Tensor, rule: str) -> torch.Tensor:
    """Which trained samples enter the UEC-RL replay buffer. Bool [B].

    ``none``; ``positive_gt:X`` (A > X, the paper's A > A_0); ``abs_gt:X`` (|A| > X, the authors' code).
    """
    name, x = _parse_rule(rule, REPLAY_RULES)
    if name == "none":
        return torch.zeros_like(adv_B, dtype=torch.bool)
    if name == "positive_gt":
        return adv_B > x
    return adv_B.abs() > x
