"""Token log-probabilities and the ONE definition of token entropy (docs/algorithms.md#token-entropy).

``H = logsumexp(z) - sum_v softmax(z)_v z_v`` of the learner's logits ``z`` (already divided by the
rollout temperature). Everything in rlsys that acts on or logs "entropy" must come from here; the
NLL of sampled tokens is a different quantity. Pure torch: must not import ray, vllm, deepspeed or
rlsys.config.

Deliberate choices:
- [C] the chunked path computes logits as ``(hidden @ W^T).float() / temperature`` (matmul in the
  inputs' dtype, softmax maths in float32, as verl does) and returns float32 log-probs/entropies.
- The chunked path recomputes each chunk's logits in backward (a custom autograd.Function), so no
  float32 [N, V] tensor larger than one chunk exists in forward or backward. Peak extra memory is
  about 5 * chunk_tokens * V * 4 bytes, plus a float32 [V, H] accumulator for the weight gradient.
- The weight gradient is accumulated in float32 across chunks, then cast to the weight's dtype.
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
    """Naive reference: ``(log softmax(z)[target], entropy(z))`` for logits [N, V], target long [N].

    Computed in float32 (float64 stays float64). Materialises [N, V]; use for small cases and as the reference of the chunked path.
    """
    return _logp_entropy_core(_at_least_float32(logits_NV), target_N.long())


def _chunk_logits(hidden_CH: torch.Tensor, weight_VH: torch.Tensor, temp_C: torch.Tensor) -> torch.Tensor:
    """Float32 logits [C, V] of one chunk, divided by each token's temperature."""
    return (hidden_CH @ weight_VH.t()).float() / temp_C.unsqueeze(-1)


def _logits_grad(z_CV: torch.Tensor, target_C: torch.Tensor, g_logp_C, g_ent_C) -> torch.Tensor:
    """d(g_logp . logp + g_ent . H)/dz for one chunk [C, V] (float32).

    dlogp_t/dz_v = 1[v = t] - p_v and dH/dz_v = -p_v (z_v - sum_u p_u z_u).
    """
    zs_CV, _, p_CV = _shifted_softmax_stats(z_CV)
    if g_ent_C is not None:
        mean_z_C = (p_CV * zs_CV).sum(dim=-1, keepdim=True)
        grad_CV = zs_CV.sub_(mean_z_C).mul_(p_CV).mul_(-g_ent_C.unsqueeze(-1))
    else:
        grad_CV = torch.zeros_like(p_CV)
    if g_logp_C is not None:
        grad_CV.sub_(p_CV.mul_(g_logp_C.unsqueeze(-1)))
        rows_C = torch.arange(grad_CV.shape[0], device=grad_CV.device)
        grad_CV.index_put_((rows_C, target_C), g_logp_C.float(), accumulate=True)
    return grad_CV


class _ChunkedLogpEntropy(torch.autograd.Function):
    """logits = hidden @ W^T / temperature, chunk by chunk over tokens, recomputed in backward."""

    @staticmethod
    def forward(ctx, hidden_NH, weight_VH, target_N, temp_N, chunk_tokens):
        ctx.set_materialize_grads(False)  # an unused output (entropy at coef 0) costs nothing
        N = hidden_NH.shape[0]
        logp_N = torch.empty(N, dtype=torch.float32, device=hidden_NH.device)
        entropy_N = torch.empty_like(logp_N)
        for s in range(0, N, chunk_tokens):
            e = min(N, s + chunk_tokens)
            z_CV = _chunk_logits(hidden_NH[s:e], weight_VH, temp_N[s:e])
            logp_N[s:e], entropy_N[s:e] = _logp_entropy_core(z_CV, target_N[s:e])
            del z_CV
        ctx.save_for_backward(hidden_NH, weight_VH, target_N, temp_N)
        ctx.chunk_tokens = chunk_tokens
        return logp_N, entropy_N

    @staticmethod
    def backward(ctx, g_logp_N, g_ent_N):
        hidden_NH, weight_VH, target_N, temp_N = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if (g_logp_N is None and g_ent_N is None) or not (need_h or need_w):
            return None, None, None, None, None
        grad_h = torch.empty_like(hidden_NH) if need_h else None
        grad_w = torch.zeros(weight_VH.shape, dtype=torch.float32, device=weight_VH.device) if need_w else None
        N, chunk = hidden_NH.shape[0], ctx.chunk_tokens
        for s in range(0, N, chunk):
            e = min(N, s + chunk)
            h_CH, t_C = hidden_NH[s:e], temp_N[s:e]
            z_CV = _chunk_logits(h_CH, weight_VH, t_C)
            g_CV = _logits_grad(z_CV, target_N[s:e], None if g_logp_N is None else g_logp_N[s:e],
                                None if g_ent_N is None else g_ent_N[s:e])
            del z_CV
            g_CV = g_CV.div_(t_C.unsqueeze(-1))  # chain rule through z = hidden @ W^T / T
            if need_h:
                grad_h[s:e] = g_CV.to(hidden_NH.dtype) @ weight_VH
            if need_w:
                grad_w.addmm_(g_CV.t(), h_CH.float())
            del g_CV
        return grad_h, None if grad_w is None else grad_w.to(weight_VH.dtype), None, None, None


def logp_and_entropy_chunked(hidden_NH: torch.Tensor, lm_head_weight_VH: torch.Tensor,
                             target_N: torch.Tensor, temperature_N: torch.Tensor | float,
                             chunk_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp_N, entropy_N) of ``target_N`` under logits ``hidden @ W^T / temperature``, float32.

    hidden_NH [N, H], lm_head_weight_VH [V, H], target_N long [N], temperature a float or [N].
    At most ``chunk_tokens`` rows of logits exist at any time, in forward and in backward;
    gradients flow to hidden and weight and equal those of the naive computation.
    """
    if chunk_tokens <= 0:
        raise ValueError(f"chunk_tokens={chunk_tokens}: must be > 0")
    N = hidden_NH.shape[0]
    temp_N = torch.as_tensor(temperature_N, dtype=torch.float32, device=hidden_NH.device)
    temp_N = temp_N.expand(N) if temp_N.dim() == 0 else temp_N
    if temp_N.shape != (N,):
        raise ValueError(f"temperature has shape {tuple(temp_N.shape)}, expected ({N},) or a scalar")
    return _ChunkedLogpEntropy.apply(hidden_NH, lm_head_weight_VH, target_N.long(), temp_N, chunk_tokens)
