"""The parametric policy loss (docs/algorithms.md#policy-loss; #checked-properties 2, 3, 18, 20, 21)."""
import math

import pytest
import torch

from rlsys.algo.aggregate import aggregate
from rlsys.algo.entropy import logp_and_entropy_from_logits
from rlsys.algo.loss import LossSpec, clipped_surrogate, k3_kl, policy_loss

DIAG_KEYS = {"loss_pg", "loss_entropy", "loss_kl", "ref_kl", "clipfrac_upper", "clipfrac_lower", "clipfrac_dual",
             "ppo_kl", "cov_selected_frac", "cov_selected_count", "cov_mean", "entropy_token_mean"}


def grad_wrt_logp(logp_BT, old_BT, adv_B, mask_BT, spec, coef_B=None, generator=None):
    logp = logp_BT.clone().requires_grad_(True)
    coef = torch.zeros(logp.shape[0]) if coef_B is None else coef_B
    N, S = int(mask_BT.sum()), logp.shape[0]
    loss, diag = policy_loss(logp, old_BT, adv_B, mask_BT, torch.zeros_like(logp), coef, spec, N, S,
                             generator=generator)
    loss.backward()
    return logp.grad, diag


def test_clipped_surrogate_hand_worked():
    # eps 0.2/0.28, dual c = 3. (r, A) -> psi:
    #   (1.1, 1):  min(1.1, 1.1) = 1.1            no clip
    #   (1.5, 1):  min(1.5, 1.28) = 1.28           upper clip
    #   (0.5, -1): min(-0.5, -0.8) = -0.8          lower clip
    #   (4.0, -1): min(-4, -1.28) = -4 -> max(-4, -3) = -3   dual clip
    #   (2.0, -1): min(-2, -1.28) = -2 -> max(-2, -3) = -2   neither
    r = torch.tensor([[1.1, 1.5, 0.5, 4.0, 2.0]])
    a = torch.tensor([[1.0, 1.0, -1.0, -1.0, -1.0]])
    psi, up, lo, du = clipped_surrogate(r, a, 0.2, 0.28, 3.0)
    assert torch.allclose(psi, torch.tensor([[1.1, 1.28, -0.8, -3.0, -2.0]]))
    assert up.tolist() == [[False, True, False, False, False]]
    assert lo.tolist() == [[False, False, True, False, False]]
    assert du.tolist() == [[False, False, False, True, False]]


def test_clip_higher_gradient():
    # Property 18: eps_hi = 0.28, A = +1. r = 1.30 > 1.28 -> clipped, grad 0; r = 1.25 -> grad -A r / N
    r = torch.tensor([[1.30, 1.25]])
    old = torch.tensor([[-1.0, -1.0]])
    logp = old + r.log()
    g, diag = grad_wrt_logp(logp, old, torch.tensor([1.0]), torch.ones(1, 2), LossSpec(eps_high=0.28))
    assert g[0, 0].item() == 0.0
    assert g[0, 1].item() == pytest.approx(-1.25 / 2, rel=1e-5)
    assert diag["clipfrac_upper"].item() == pytest.approx(0.5)
    # with symmetric eps 0.2 the r = 1.25 token is clipped as well
    g, _ = grad_wrt_logp(logp, old, torch.tensor([1.0]), torch.ones(1, 2), LossSpec(eps_high=0.2))
    assert g.abs().sum().item() == 0.0


def test_dual_clip_gradient():
    # A = -1, r = 4 > c = 3: the bound c*A is constant -> grad 0; r = 2 < 3 -> grad -A r / N = 2/2 = 1
    old = torch.zeros(1, 2)
    logp = torch.tensor([[math.log(4.0), math.log(2.0)]])
    g, diag = grad_wrt_logp(logp, old, torch.tensor([-1.0]), torch.ones(1, 2), LossSpec(dual_clip_c=3.0))
    assert g[0, 0].item() == 0.0 and g[0, 1].item() == pytest.approx(1.0, rel=1e-5)
    assert diag["clipfrac_dual"].item() == pytest.approx(0.5)


def plain_clipped_loss(logp, old, adv_B, mask, spec, N, S):
    """What a plain GRPO/DAPO implementation writes, no entropy/cov code paths."""
    ratio = torch.exp(logp - old)
    psi = torch.minimum(ratio * adv_B[:, None], ratio.clamp(1 - spec.eps_low, 1 + spec.eps_high) * adv_B[:, None])
    loss = aggregate(-psi, mask, spec.agg_mode, N, S, spec.const_len)
    if spec.ref_kl_coef > 0:
        loss = loss + spec.ref_kl_coef * aggregate(k3_kl(logp, ref_logp_of(old)), mask, spec.agg_mode, N, S,
                                                   spec.const_len)
    return loss


def ref_logp_of(old):
    return old - 0.05


@pytest.mark.parametrize("spec", [LossSpec(), LossSpec(eps_high=0.28),
                                  LossSpec(agg_mode="seq_mean_token_mean", ref_kl_coef=0.04),
                                  LossSpec(agg_mode="seq_sum_const", const_len=9)])
def test_zero_coef_is_bitwise_plain_grpo(spec):
    # Property 3: lambda = 0, no cov masks -> identical loss and gradients (torch.equal), through the
    # logp/entropy of logits = hidden @ W^T / T, as the learner computes them per chunk.
    g = torch.Generator().manual_seed(0)
    B, T, H, V = 4, 9, 8, 31
    hidden = torch.randn(B * T, H, generator=g, requires_grad=True)
    weight = torch.randn(V, H, generator=g, requires_grad=True)
    target = torch.randint(0, V, (B * T,), generator=g)
    mask = (torch.arange(T)[None] < torch.tensor([9, 3, 6, 1])[:, None]).float()
    adv = torch.tensor([1.2, -0.4, 0.0, -0.8])
    N, S = int(mask.sum()), B
    with torch.no_grad():
        old = logp_and_entropy_from_logits(hidden @ weight.t() / 0.7, target)[0].view(B, T)
        old = old + 0.3 * torch.randn(B, T, generator=g)  # ratios on both sides of the clip range
    results = []
    for use_policy_loss in (True, False):
        hidden.grad = weight.grad = None
        logp, ent = logp_and_entropy_from_logits(hidden @ weight.t() / 0.7, target)
        logp, ent = logp.view(B, T), ent.view(B, T)
        if use_policy_loss:
            loss, diag = policy_loss(logp, old, adv, mask, ent, torch.zeros(B), spec, N, S,
                                     ref_logp_BT=ref_logp_of(old))
            assert diag["loss_entropy"].item() == 0.0 and diag["entropy_token_mean"].item() > 0.0
        else:
            loss = plain_clipped_loss(logp, old, adv, mask, spec, N, S)
        loss.backward()
        results.append((loss.detach(), hidden.grad.clone(), weight.grad.clone()))
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_entropy_bonus_per_prompt_coef():
    # coef broadcast per sample: d loss / d H_{i,t} = -coef_i / N (token_mean). B=2, T=2, N=3.
    logp = torch.full((2, 2), -1.0)
    ent = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    coef = torch.tensor([0.1, 0.0])
    loss, diag = policy_loss(logp, logp, torch.zeros(2), mask, ent, coef, LossSpec(), 3, 2)
    loss.backward()
    assert torch.allclose(ent.grad, torch.tensor([[-0.1 / 3, -0.1 / 3], [0.0, 0.0]]))
    # loss_entropy = -(0.1*1 + 0.1*2)/3 = -0.1; entropy_token_mean = (1+2+3)/3 = 2
    assert diag["loss_entropy"].item() == pytest.approx(-0.1)
    assert diag["entropy_token_mean"].item() == pytest.approx(2.0)
    assert loss.item() == pytest.approx(-0.1)


def test_dr_grpo_weight_independent_of_length():
    # Property 20: a long (6 tokens) and a short (2 tokens) wrong answer, both A = -1, r = 1.
    # d loss/d logp_t = -A r w_t = w_t:  seq_sum_const (S=2, L_c=6): 1/12 on every token of both;
    # seq_mean_token_mean: 1/(2*6) = 1/12 (long) vs 1/(2*2) = 1/4 (short).
    mask = torch.tensor([[1.0] * 6, [1.0] * 2 + [0.0] * 4])
    logp = torch.full((2, 6), -2.0)
    adv = torch.tensor([-1.0, -1.0])
    g_dr, _ = grad_wrt_logp(logp, logp, adv, mask, LossSpec(agg_mode="seq_sum_const", const_len=6))
    assert torch.allclose(g_dr, mask / 12)
    g_grpo, _ = grad_wrt_logp(logp, logp, adv, mask, LossSpec(agg_mode="seq_mean_token_mean"))
    assert torch.allclose(g_grpo[0], torch.full((6,), 1 / 12)) and torch.allclose(g_grpo[1, :2], torch.full((2,), 0.25))


def clip_cov_batch():
    # B=4, T=10, N=40. A = (4,-4,0,0): mean A = 0. logp rows 0,1 = [-0.5]*5 + [-1.5]*5, rows 2,3 = -1:
    # mean logp = -1. Cov = A (logp + 1): row0 = (+2)*5, (-2)*5; row1 = (-2)*5, (+2)*5; rows 2,3 = 0.
    # So exactly 10 tokens have Cov = 2 in (1, 5): row0 t0..4 and row1 t5..9.
    row = torch.tensor([-0.5] * 5 + [-1.5] * 5)
    logp = torch.stack([row, row, torch.full((10,), -1.0), torch.full((10,), -1.0)])
    eligible = torch.zeros(4, 10, dtype=torch.bool)
    eligible[0, :5] = eligible[1, 5:] = True
    return logp, torch.tensor([4.0, -4.0, 0.0, 0.0]), torch.ones(4, 10), eligible


@pytest.mark.parametrize("ratio,expected", [(0.1, 4), (1e-4, 1), (0.2, 8), (0.5, 10)])
def test_clip_cov_zeroes_exact_count(ratio, expected):
    # Property 21: max(1, floor(r*40)) tokens: 0.1 -> 4, 1e-4 -> max(1, 0) = 1, 0.2 -> 8, 0.5 -> 20 but
    # only 10 qualify -> 10. r = 1 everywhere, so without the mask every A != 0 token has grad -A/40.
    logp, adv, mask, eligible = clip_cov_batch()
    g, diag = grad_wrt_logp(logp, logp, adv, mask, LossSpec(clip_cov_ratio=ratio),
                            generator=torch.Generator().manual_seed(0))
    zeroed = (g == 0) & (adv[:, None] != 0)
    assert int(zeroed.sum()) == expected and bool((zeroed <= eligible).all())
    assert torch.allclose(g[~zeroed], (-adv[:, None] / 40).expand(4, 10)[~zeroed])
    assert diag["cov_selected_count"].item() == expected
    assert diag["cov_selected_frac"].item() == pytest.approx(expected / 40)
    assert diag["cov_mean"].item() == pytest.approx(2.0)


def test_clip_cov_bounds_clipped_tokens_and_reproducibility():
    logp, adv, mask, eligible = clip_cov_batch()
    # Cov = 2 is outside (2.5, 5): nothing is zeroed
    g, diag = grad_wrt_logp(logp, logp, adv, mask, LossSpec(clip_cov_ratio=0.1, clip_cov_lb=2.5))
    assert diag["cov_selected_count"].item() == 0 and int(((g == 0) & (adv[:, None] != 0)).sum()) == 0
    # two eligible tokens already clipped by PPO (A = 4 > 0, r = e^0.5 > 1.2): never picked.
    # r = 0.5 asks for 20, 10 qualify by Cov, 2 of them are clipped -> 8 zeroed
    old = logp.clone()
    old[0, :2] -= 0.5
    g, diag = grad_wrt_logp(logp, old, adv, mask, LossSpec(clip_cov_ratio=0.5))
    assert diag["cov_selected_count"].item() == 8 and diag["clipfrac_upper"].item() == pytest.approx(2 / 40)
    picks = [grad_wrt_logp(logp, logp, adv, mask, LossSpec(clip_cov_ratio=0.1),
                           generator=torch.Generator().manual_seed(s))[0] == 0 for s in (7, 7, 8)]
    assert torch.equal(picks[0], picks[1])


def test_kl_cov_top_k_penalty():
    # Property 21 (KL-Cov). A = (1, -1), N = 10, mean A = 0, mean logp = -1:
    # Cov row0 = logp + 1 = (0.9, 0.5, 0, -0.5, -0.9); row1 = -(logp + 1) = (-0.8, -0.4, 0, 0.4, 0.8).
    # kappa = 0.2 -> 2 tokens: (0,0) Cov 0.9 and (1,4) Cov 0.8; kappa = 0.05 -> max(1, 0) = 1: (0,0).
    logp = torch.tensor([[-0.1, -0.5, -1.0, -1.5, -1.9], [-0.2, -0.6, -1.0, -1.4, -1.8]])
    old = logp - 0.5  # r = e^0.5 = 1.6487: outside the clip range, but KL-Cov does not clip
    adv = torch.tensor([1.0, -1.0])
    r = math.exp(0.5)
    for kappa, chosen, cov_mean in [(0.2, [(0, 0), (1, 4)], 0.85), (0.05, [(0, 0)], 0.9)]:
        g, diag = grad_wrt_logp(logp, old, adv, torch.ones(2, 5), LossSpec(kl_cov_ratio=kappa, kl_cov_coef=1.0))
        # d/dlogp of (-A r + beta |logp - old|) / N = (-A r + beta) / 10 on selected, -A r / 10 elsewhere
        extra = g * 10 + adv[:, None] * r
        sel = torch.zeros(2, 5, dtype=torch.bool)
        for i, t in chosen:
            sel[i, t] = True
        assert torch.allclose(extra, sel.float(), atol=1e-5)
        assert diag["cov_selected_count"].item() == len(chosen)
        assert diag["cov_mean"].item() == pytest.approx(cov_mean, abs=1e-5)
        assert diag["clipfrac_upper"].item() == 0.0


def test_k3_kl_values():
    # delta = ref - logp = log 2: e^delta - delta - 1 = 2 - 0.693147 - 1 = 0.306853; delta = 0 -> 0;
    # delta = 15: e^15 - 16 ~ 3.3e6 -> clamped to 10
    logp = torch.zeros(1, 3)
    ref = torch.tensor([[math.log(2.0), 0.0, 15.0]])
    assert torch.allclose(k3_kl(logp, ref), torch.tensor([[0.306853, 0.0, 10.0]]), atol=1e-6)


def test_ppo_kl_and_diagnostics_are_detached():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    old = torch.tensor([[-1.5, -1.5]])
    loss, diag = policy_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 2), torch.ones(1, 2), torch.zeros(1),
                             LossSpec(), 2, 1)
    # ppo_kl = mean(old - logp) = (-0.5 + 0.5)/2 = 0
    assert set(diag) == DIAG_KEYS and all(not v.requires_grad for v in diag.values())
    assert diag["ppo_kl"].item() == pytest.approx(0.0)


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "seq_sum_const"])
def test_loss_and_diagnostics_sum_over_shards(mode):
    # Property 2 for the whole loss: 3 uneven shards with global counts sum to the unsharded values.
    g = torch.Generator().manual_seed(3)
    B, T = 8, 6
    logp = -3 * torch.rand(B, T, generator=g, dtype=torch.float64)
    old = logp + 0.4 * torch.randn(B, T, generator=g, dtype=torch.float64)
    ref = logp + 0.2 * torch.randn(B, T, generator=g, dtype=torch.float64)
    ent = 2 * torch.rand(B, T, generator=g, dtype=torch.float64)
    mask = (torch.arange(T)[None] < torch.randint(1, T + 1, (B,), generator=g)[:, None]).double()
    adv, coef = torch.randn(B, generator=g, dtype=torch.float64), torch.rand(B, generator=g, dtype=torch.float64)
    spec = LossSpec(eps_high=0.28, dual_clip_c=3.0, ref_kl_coef=0.1, agg_mode=mode, const_len=6)
    N = int(mask.sum())

    def run(s):
        return policy_loss(logp[s], old[s], adv[s], mask[s], ent[s], coef[s], spec, N, B, ref_logp_BT=ref[s])

    full_loss, full_diag = run(slice(0, B))
    parts = [run(s) for s in (slice(0, 1), slice(1, 6), slice(6, 8))]
    assert torch.allclose(sum(p[0] for p in parts), full_loss, atol=1e-12)
    for key in DIAG_KEYS - {"cov_mean", "cov_selected_count"}:
        assert torch.allclose(sum(p[1][key] for p in parts), full_diag[key], atol=1e-12), key
    assert full_diag["clipfrac_upper"] > 0 and full_diag["clipfrac_lower"] > 0


def test_spec_validation():
    with pytest.raises(ValueError):
        LossSpec(clip_cov_ratio=0.1, kl_cov_ratio=0.1)
    with pytest.raises(ValueError):
        LossSpec(dual_clip_c=0.5)
    with pytest.raises(ValueError):
        LossSpec(agg_mode="sum")
    with pytest.raises(ValueError):
        policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1), torch.ones(1, 1), torch.zeros(1, 1),
                    torch.zeros(1), LossSpec(ref_kl_coef=0.1), 1, 1)


@pytest.mark.parametrize("spec", [LossSpec(kl_cov_ratio=0.1), LossSpec(clip_cov_ratio=0.1), LossSpec()])
def test_micro_batch_without_valid_tokens_contributes_zero(spec):
    # a rank/micro-batch whose rows are all padding: loss 0, no selection, zero (finite) gradient
    x = torch.zeros(2, 3, requires_grad=True)
    loss, diag = policy_loss(x, torch.zeros(2, 3), torch.tensor([1.0, -1.0]), torch.zeros(2, 3), torch.zeros(2, 3),
                             torch.zeros(2), spec, 5, 2)
    loss.backward()
    assert loss.item() == 0.0 and diag["cov_selected_count"].item() == 0 and x.grad.abs().sum().item() == 0.0
