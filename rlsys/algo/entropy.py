"""Token log-probabilities and the ONE definition of token entropy (docs/algorithms.md#token-entropy).

``H = logsumexp(z) - sum_v softmax(z)_v z_v`` of the learner's logits ``z`` (already divided by the
rollout temperature). Everything in rlsys that acts on or logs "entropy" must come from here; the
NLL of sampled tokens is a different quantity. Pure torch: must not import ray, vllm, deepspeed or
rlsys.config.

The learner applies these chunk by chunk of tokens under activation checkpointing
(rlsys/learner/forward.py), so no float32 [tokens x vocab] logits tensor larger than one chunk exists.
"""
from __future__ import annotations

import torch

_MIN_SHIFTED_LOGIT = -1e4  # exp() of it underflows to exactly 0 in float32 and float64


def _shifted_softmax_stats(z_NV: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(zs, lse_s, p) with zs = z - max(z): shifting first avoids cancellation in lse - sum(p z).

    Shifted logits below -1e4 (e.g. -inf from vocabulary masking) are clamped to -1e4 so that
    p * z is 0 * finite (not 0 * -inf = NaN, also in backward); exp(-1e4) is exactly 0 in float32 and
    float64, so values are unchanged.
    """
    zs_NV = z_NV - z_NV.amax(dim=-1, keepdim=True).detach()
    zs_NV = zs_NV.clamp(min=_MIN_SHIFTED_LOGIT)
    lse_s_N = torch.logsumexp(zs_NV, dim=-1)
    p_NV = torch.exp(zs_NV - lse_s_N.unsqueeze(-1))
    return zs_NV, lse_s_N, p_NV


def _at_least_float32(z: torch.Tensor) -> torch.Tensor:
    return z if z.dtype in (torch.float32, torch.float64) else z.float()


def _logp_entropy_core(z_NV: torch.Tensor, target_N: torch.Tensor | None):
    """Log-prob of ``target_N`` (or None) and exact entropy for float logits [..., V]."""
    zs_NV, lse_s_N, p_NV = _shifted_softmax_stats(z_NV)
    entropy_N = lse_s_N - (p_NV * zs_NV).sum(dim=-1)
    if target_N is None:
        return None, entropy_N
    logp_N = zs_NV.gather(-1, target_N.unsqueeze(-1)).squeeze(-1) - lse_s_N
    return logp_N, entropy_N


def entropy_from_logits(logits_NV: torch.Tensor) -> torch.Tensor:
    """Exact token entropy ``-sum_v p_v log p_v`` of logits [..., V] -> [...], differentiable.

    Computed in float32 (float64 stays float64). Equals ``log V`` for uniform logits and 0 for
    one-hot (all other logits -inf).
    """
    return _logp_entropy_core(_at_least_float32(logits_NV), None)[1]


def logp_and_entropy_from_logits(logits_NV: torch.Tensor, target_N: torch.Tensor):
    """``(log softmax(z)[target], entropy(z))`` for logits [N, V], target long [N], differentiable.

    Computed in float32 (float64 stays float64). The learner calls it on one chunk of logits at a time.
    """
    return _logp_entropy_core(_at_least_float32(logits_NV), target_N.long())
