"""The parametric per-token policy loss (docs/algorithms.md#policy-loss), reduced with ``aggregate``.

l = -m_cov * psi(r, A) + beta_kl * s_cov * |logp - old_logp| - lambda_q * H + beta_ref * KL_k3, where psi
is the clipped surrogate (eps_low/eps_high, optional dual clip), m_cov the Clip-Cov mask and s_cov the
KL-Cov selection (Cui et al. 2025). Pure torch: must not import ray, vllm, deepspeed or rlsys.config.

Deliberate choices and departures:
- log(ratio) is clamped to [-20, 20] before exp (verl) so one stale token cannot overflow; in range
  the clamp is an exact identity, values and gradients.
- KL-Cov replaces the PPO clip entirely (every token gets the unclipped -A*r, as verl's kl_cov); the
  dual clip does not apply there either, and the clipfrac diagnostics are then 0.
- Clip-Cov/KL-Cov statistics (the means inside Cov, the token count N of max(1, floor(r*N))) are over
  the valid tokens of THIS call (one micro-batch on one rank), as verl does: not sharding-invariant.
  floor(r*N) uses a 1e-9 tolerance so that e.g. 0.29 * 100 gives 29, not 28.
- [C] Clip-Cov "already clipped" tokens include dual-clipped ones (their gradient is 0 anyway).
- The k3 reference KL clamps delta = ref_logp - logp to [-20, 20] and the KL to [-10, 10] (verl
  low_var_kl). The KL-Cov penalty |logp - old_logp| is reported inside loss_pg.
- With every coef exactly 0 the entropy term is skipped (not multiplied by 0), so loss and gradients
  are bitwise those of the plain clipped surrogate; the entropy is still reported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rlsys.algo.aggregate import AGG_MODES, aggregate, masked_global_sum


@dataclass(frozen=True)
class LossSpec:
    """Loss hyper-parameters (the learner builds this from its algo config section)."""

    eps_low: float = 0.2  # lower clip range: r >= 1 - eps_low for A < 0
    eps_high: float = 0.2  # upper clip range: r <= 1 + eps_high for A > 0 (DAPO clip-higher 0.28)
    dual_clip_c: float = 0.0  # dual clip bound c > 1 for A < 0 (0 = off; UEC-RL 3)
    ref_kl_coef: float = 0.0  # beta_ref of the k3 reference KL (0 = off)
    agg_mode: str = "token_mean"  # a key of rlsys.algo.aggregate.AGG_MODES
    const_len: int = 0  # L_c of seq_sum_const
    clip_cov_ratio: float = 0.0  # Clip-Cov fraction r of tokens whose loss is zeroed (0 = off)
    clip_cov_lb: float = 1.0  # Clip-Cov omega_lo (exclusive)
    clip_cov_ub: float = 5.0  # Clip-Cov omega_hi (exclusive)
    kl_cov_ratio: float = 0.0  # KL-Cov fraction kappa of tokens penalised (0 = off)
    kl_cov_coef: float = 1.0  # KL-Cov beta_kl

    def __post_init__(self):
        if self.agg_mode not in AGG_MODES:
            raise ValueError(f"agg_mode={self.agg_mode!r}: must be one of {tuple(AGG_MODES)}")
        if self.clip_cov_ratio > 0 and self.kl_cov_ratio > 0:
            raise ValueError("clip_cov_ratio and kl_cov_ratio are exclusive: choose Clip-Cov or KL-Cov")
        if self.dual_clip_c and self.dual_clip_c <= 1.0:
            raise ValueError(f"dual_clip_c={self.dual_clip_c}: must be > 1 (or 0 = off)")
        if min(self.eps_low, self.eps_high, self.ref_kl_coef, self.clip_cov_ratio, self.kl_cov_ratio) < 0:
            raise ValueError(f"negative loss hyper-parameter in {self}")


def clipped_surrogate(ratio_BT: torch.Tensor, adv_BT: torch.Tensor, eps_low: float, eps_high: float,
                      dual_clip_c: float = 0.0):
    """psi = min(r A, clip(r, 1-eps_low, 1+eps_high) A), then max(psi, c A) where A < 0 if c > 0.

    Returns (psi_BT, upper_BT, lower_BT, dual_BT); the bool masks mark tokens where that clip is
    active (gradient zero): upper A>0 & r>1+eps_high, lower A<0 & r<1-eps_low, dual A<0 & r>c.
    """
    surr1_BT = ratio_BT * adv_BT
    surr2_BT = ratio_BT.clamp(1.0 - eps_low, 1.0 + eps_high) * adv_BT
    psi_BT = torch.minimum(surr1_BT, surr2_BT)
    upper_BT = (adv_BT > 0) & (ratio_BT > 1.0 + eps_high)
    lower_BT = (adv_BT < 0) & (ratio_BT < 1.0 - eps_low)
    dual_BT = torch.zeros_like(upper_BT)
    if dual_clip_c > 0:
        neg_BT = adv_BT < 0
        dual_BT = neg_BT & (ratio_BT > dual_clip_c)
        psi_BT = torch.where(neg_BT, torch.maximum(psi_BT, dual_clip_c * adv_BT), psi_BT)
    return psi_BT, upper_BT, lower_BT, dual_BT


def token_covariance(logp_BT: torch.Tensor, adv_BT: torch.Tensor, mask_BT: torch.Tensor) -> torch.Tensor:
    """Cov_{i,t} = (A - mean A)(logp - mean logp), means over this call's valid tokens; 0 off-mask.

    Detached: it only selects tokens.
    """
    with torch.no_grad():
        m_BT = mask_BT.to(logp_BT.dtype)
        n = m_BT.sum().clamp(min=1.0)
        mean_a = (adv_BT * m_BT).sum() / n
        mean_logp = (logp_BT * m_BT).sum() / n
        return (adv_BT - mean_a) * (logp_BT - mean_logp) * m_BT


def _num_selected(ratio: float, n_tokens: int) -> int:
    """max(1, floor(ratio * N)), capped at N."""
    return min(n_tokens, max(1, math.floor(ratio * n_tokens + 1e-9)))


def clip_cov_mask(cov_BT: torch.Tensor, eligible_BT: torch.Tensor, ratio: float, bounds: tuple[float, float],
                  n_tokens: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Clip-Cov: uniformly pick max(1, floor(ratio*N)) eligible tokens with lb < Cov < ub. Bool [B, T].

    ``generator`` (on any device) makes the pick reproducible; fewer are picked if fewer qualify.
    """
    lb, ub = bounds
    cand_K = torch.nonzero((eligible_BT & (cov_BT > lb) & (cov_BT < ub)).flatten()).squeeze(1)
    k = min(_num_selected(ratio, n_tokens), cand_K.numel())
    perm_device = generator.device if generator is not None else torch.device("cpu")
    perm_K = torch.randperm(cand_K.numel(), generator=generator, device=perm_device)[:k]
    chosen_flat = torch.zeros(cov_BT.numel(), dtype=torch.bool, device=cov_BT.device)
    chosen_flat[cand_K[perm_K.to(cand_K.device)]] = True
    return chosen_flat.view_as(cov_BT)


def kl_cov_mask(cov_BT: torch.Tensor, mask_BT: torch.Tensor, ratio: float) -> torch.Tensor:
    """KL-Cov: the top max(1, floor(ratio*N)) valid tokens by Cov (ties: torch.topk's pick). Bool [B, T]."""
    valid_K = torch.nonzero(mask_BT.flatten() > 0).squeeze(1)
    k = _num_selected(ratio, valid_K.numel())
    top_k = torch.topk(cov_BT.flatten()[valid_K], k).indices
    chosen_flat = torch.zeros(cov_BT.numel(), dtype=torch.bool, device=cov_BT.device)
    chosen_flat[valid_K[top_k]] = True
    return chosen_flat.view_as(cov_BT)


def k3_kl(logp_BT: torch.Tensor, ref_logp_BT: torch.Tensor) -> torch.Tensor:
    """GRPO's k3 estimator exp(d) - d - 1 with d = ref_logp - logp, clamped to [-10, 10] (verl low_var_kl)."""
    delta_BT = (ref_logp_BT.detach() - logp_BT).clamp(-20.0, 20.0)
    return (torch.exp(delta_BT) - delta_BT - 1.0).clamp(-10.0, 10.0)


def _policy_term(logp_BT, old_logp_BT, adv_BT, mask_BT, spec: LossSpec, generator):
    """Per-token policy loss [B, T] (before aggregation) and its token masks/covariance."""
    ratio_BT = torch.exp((logp_BT - old_logp_BT).clamp(-20.0, 20.0))
    valid_BT = mask_BT > 0
    if spec.kl_cov_ratio > 0:
        cov_BT = token_covariance(logp_BT, adv_BT, mask_BT)
        sel_BT = kl_cov_mask(cov_BT, mask_BT, spec.kl_cov_ratio)
        penalty_BT = spec.kl_cov_coef * (logp_BT - old_logp_BT).abs()
        loss_BT = torch.where(sel_BT, -adv_BT * ratio_BT + penalty_BT, -adv_BT * ratio_BT)
        no_clip_BT = torch.zeros_like(sel_BT)
        return loss_BT, dict(upper=no_clip_BT, lower=no_clip_BT, dual=no_clip_BT, selected=sel_BT, cov=cov_BT)
    psi_BT, upper_BT, lower_BT, dual_BT = clipped_surrogate(
        ratio_BT, adv_BT, spec.eps_low, spec.eps_high, spec.dual_clip_c)
    loss_BT = -psi_BT
    flags = dict(upper=upper_BT, lower=lower_BT, dual=dual_BT, selected=torch.zeros_like(upper_BT), cov=None)
    if spec.clip_cov_ratio > 0:
        n_tokens = int(valid_BT.sum().item())  # local N of max(1, floor(r*N)); host sync
        cov_BT = token_covariance(logp_BT, adv_BT, mask_BT)
        eligible_BT = valid_BT & ~(upper_BT | lower_BT | dual_BT)
        sel_BT = clip_cov_mask(cov_BT, eligible_BT, spec.clip_cov_ratio,
                               (spec.clip_cov_lb, spec.clip_cov_ub), n_tokens, generator)
        loss_BT = torch.where(sel_BT, torch.zeros_like(loss_BT), loss_BT)  # no gradient through them
        flags.update(selected=sel_BT, cov=cov_BT)
    return loss_BT, flags


def _diagnostics(flags, logp_BT, old_logp_BT, entropy_BT, mask_BT, global_num_tokens: int):
    """Detached diagnostics; all but cov_mean are sums / global_num_tokens (sharding-additive)."""
    n = global_num_tokens
    sel_BT = flags["selected"]
    with torch.no_grad():
        count = (sel_BT & (mask_BT > 0)).sum().float()
        cov_sum = (flags["cov"] * sel_BT).sum() if flags["cov"] is not None else torch.zeros(())
        return {
            "clipfrac_upper": masked_global_sum(flags["upper"], mask_BT, n),
            "clipfrac_lower": masked_global_sum(flags["lower"], mask_BT, n),
            "clipfrac_dual": masked_global_sum(flags["dual"], mask_BT, n),
            "ppo_kl": masked_global_sum(old_logp_BT - logp_BT, mask_BT, n),
            "cov_selected_frac": masked_global_sum(sel_BT, mask_BT, n),
            "cov_selected_count": count,  # local; weight cov_mean by it when combining ranks
            "cov_mean": cov_sum.float().to(count.device) / count.clamp(min=1.0),  # local mean
            "entropy_token_mean": masked_global_sum(entropy_BT, mask_BT, n),
        }


def policy_loss(logp_BT: torch.Tensor, old_logp_BT: torch.Tensor, adv_B: torch.Tensor, mask_BT: torch.Tensor,
                entropy_BT: torch.Tensor, coef_B: torch.Tensor, spec: LossSpec, global_num_tokens: int,
                global_num_seqs: int, ref_logp_BT: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """This rank's share of the loss (a scalar to backprop) and detached diagnostics.

    logp_BT/entropy_BT: current policy, differentiable [B, T]; old_logp_BT, ref_logp_BT [B, T] and
    adv_B, coef_B [B] are constants. mask_BT is 0/1. Each term is aggregated with ``aggregate``
    (spec.agg_mode, global counts), so summing the loss and every diagnostic except cov_mean over
    ranks/micro-batches gives the unsharded value (without Clip-/KL-Cov, whose selection is local).
    Diagnostic keys: loss_pg, loss_entropy (= aggregated -coef*H), loss_kl, ref_kl, clipfrac_upper,
    clipfrac_lower, clipfrac_dual, ppo_kl (k1 estimate of KL(old||new)), cov_selected_frac,
    cov_selected_count, cov_mean, entropy_token_mean.
    """
    old_logp_BT = old_logp_BT.detach()
    adv_BT = adv_B.detach().to(logp_BT.dtype).unsqueeze(-1).expand_as(logp_BT)

    def agg(x_BT):
        return aggregate(x_BT, mask_BT, spec.agg_mode, global_num_tokens, global_num_seqs, spec.const_len)

    pg_loss_BT, flags = _policy_term(logp_BT, old_logp_BT, adv_BT, mask_BT, spec, generator)
    loss = loss_pg = agg(pg_loss_BT)
    zero = torch.zeros((), dtype=loss.dtype, device=loss.device)
    loss_entropy = loss_kl = ref_kl = zero
    if bool((coef_B != 0).any()):  # skipped, not multiplied by 0: keeps coef=0 bitwise plain
        coef_BT = coef_B.detach().to(entropy_BT.dtype).unsqueeze(-1)
        loss_entropy = agg(-coef_BT * entropy_BT)
        loss = loss + loss_entropy
    if spec.ref_kl_coef > 0:
        if ref_logp_BT is None:
            raise ValueError("spec.ref_kl_coef > 0 needs ref_logp_BT")
        kl_BT = k3_kl(logp_BT, ref_logp_BT)
        loss_kl = spec.ref_kl_coef * agg(kl_BT)
        ref_kl = masked_global_sum(kl_BT, mask_BT, global_num_tokens)
        loss = loss + loss_kl
    diag = _diagnostics(flags, logp_BT, old_logp_BT, entropy_BT, mask_BT, global_num_tokens)
    diag.update(loss_pg=loss_pg.detach(), loss_entropy=loss_entropy.detach(), loss_kl=loss_kl.detach(),
                ref_kl=ref_kl)
    return loss, diag
