"""Group advantages (docs/algorithms.md#advantage-modes; #checked-properties 4 and 10-12): hand-worked values
and a slow loop."""
import math

import pytest
import torch

from rlsys.algo.advantages import compute_advantages


def slow_advantages(rewards, groups, mode, ddof=0, beta_pos=0.9, beta_neg=0.4, eps=1e-6):
    """Reference: one Python loop per group, straight from the formulas."""
    out = [0.0] * len(rewards)
    for g in set(groups):
        idx = [i for i, gi in enumerate(groups) if gi == g]
        rs = [rewards[i] for i in idx]
        n, mean = len(rs), sum(rs) / len(rs)
        if mode in ("asym_power", "sign"):
            bp, bn = (beta_pos, beta_neg) if mode == "asym_power" else (0.0, 0.0)
            c = [1.0 if r >= 0.5 else 0.0 for r in rs]
            p = sum(c) / n
            for i, ci in zip(idx, c):
                out[i] = 0.0 if p in (0.0, 1.0) else (((1 - p) / p) ** bp if ci else -((p / (1 - p)) ** bn))
            continue
        if max(rs) == min(rs):
            continue
        std = math.sqrt(sum((r - mean) ** 2 for r in rs) / max(n - ddof, 1))
        for i, r in zip(idx, rs):
            out[i] = (r - mean) / (std + eps) if mode == "grpo_std" else r - mean
    return torch.tensor(out, dtype=torch.float64)


def adv(rewards, groups, mode, **kw):
    return compute_advantages(torch.tensor(rewards, dtype=torch.float64), torch.tensor(groups), mode, **kw)


def test_grpo_one_correct_of_four_ddof0_and_ddof1():
    # rewards (1,0,0,0): mean 0.25, deviations (0.75, -0.25, -0.25, -0.25).
    # ddof 0: var = (0.5625 + 3*0.0625)/4 = 0.1875, std = 0.4330 -> (sqrt3, -1/sqrt3, ...)
    a0 = adv([1, 0, 0, 0], [0, 0, 0, 0], "grpo_std", ddof=0)
    s3 = math.sqrt(3)
    assert torch.allclose(a0, torch.tensor([s3, -1 / s3, -1 / s3, -1 / s3], dtype=torch.float64), atol=1e-5)
    # ddof 1: var = 0.75/3 = 0.25, std = 0.5 -> (1.5, -0.5, -0.5, -0.5)
    a1 = adv([1, 0, 0, 0], [0, 0, 0, 0], "grpo_std", ddof=1)
    assert torch.allclose(a1, torch.tensor([1.5, -0.5, -0.5, -0.5], dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("mode", ["grpo_std", "mean_only", "asym_power", "sign"])
@pytest.mark.parametrize("ddof", [0, 1])
def test_degenerate_groups_give_exact_zero(mode, ddof):
    # all-0, all-1, a single sample, and equal non-binary rewards (0.1*3 is not exactly 0.3 in float):
    rewards = [0, 0, 0, 1, 1, 1, 1, 0.1, 0.1, 0.1]
    groups = [0, 0, 0, 1, 1, 1, 2, 3, 3, 3]
    a = adv(rewards, groups, mode, ddof=ddof)
    assert torch.isfinite(a).all()
    assert torch.equal(a, torch.zeros(10, dtype=torch.float64))


def test_mean_only_is_dr_grpo():
    # Dr.GRPO: R - mean, no std: (1,0,0,0) -> (0.75, -0.25, -0.25, -0.25)
    assert torch.allclose(adv([1, 0, 0, 0], [5] * 4, "mean_only"), torch.tensor([0.75, -0.25, -0.25, -0.25],
                                                                                  dtype=torch.float64))


def test_asym_beta_half_equals_population_grpo_and_zero_gives_sign():
    torch.manual_seed(0)
    r = (torch.rand(48) < 0.4).double()
    g = torch.arange(48) // 8
    grpo = compute_advantages(r, g, "grpo_std", ddof=0, eps=0.0)
    half = compute_advantages(r, g, "asym_power", beta_pos=0.5, beta_neg=0.5)
    assert torch.allclose(half, grpo, atol=1e-12)
    # beta = (0, 0): +1 for correct, -1 for wrong (non-degenerate groups), same as mode "sign"
    zero = compute_advantages(r, g, "asym_power", beta_pos=0.0, beta_neg=0.0)
    sign = compute_advantages(r, g, "sign")
    assert torch.equal(zero, sign)
    assert set(sign[sign != 0].tolist()) <= {1.0, -1.0}
    assert torch.equal(sign != 0, grpo != 0)


@pytest.mark.parametrize("bp,bn", [(0.9, 0.4), (0.5, 0.5), (0.0, 0.0), (2.0, 0.1)])
def test_asym_half_accuracy_gives_plus_minus_one(bp, bn):
    # p = 0.5: ((1-p)/p)^beta = 1 and (p/(1-p))^beta = 1 for every beta
    a = adv([1, 0, 1, 0], [0] * 4, "asym_power", beta_pos=bp, beta_neg=bn)
    assert torch.allclose(a, torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64))


def test_asym_worked_values():
    # p = 0.25 (1 of 4): A+ = 3^0.9 = 2.688, A- = -(1/3)^0.4 = -0.644
    a = adv([1, 0, 0, 0], [0] * 4, "asym_power", beta_pos=0.9, beta_neg=0.4)
    assert a[0].item() == pytest.approx(2.688, abs=1e-3) and a[1].item() == pytest.approx(-0.644, abs=1e-3)
    # p = 0.75 (3 of 4): A+ = (1/3)^0.9 = 0.372, A- = -3^0.4 = -1.552
    a = adv([1, 1, 1, 0], [0] * 4, "asym_power", beta_pos=0.9, beta_neg=0.4)
    assert a[0].item() == pytest.approx(0.372, abs=1e-3) and a[3].item() == pytest.approx(-1.552, abs=1e-3)


@pytest.mark.parametrize("bp,bn", [(0.9, 0.4), (0.3, 1.2)])
def test_asym_monotone_in_p(bp, bn):
    # G = 8, k = 1..7 correct: A+ strictly falls and |A-| strictly grows with p; k in {0, 8} gives 0
    pos, neg = [], []
    for k in range(0, 9):
        a = adv([1.0] * k + [0.0] * (8 - k), [0] * 8, "asym_power", beta_pos=bp, beta_neg=bn)
        if k in (0, 8):
            assert torch.equal(a, torch.zeros(8, dtype=torch.float64))
            continue
        pos.append(a[0].item())
        neg.append(-a[-1].item())
    assert all(x > y for x, y in zip(pos, pos[1:]))
    assert all(x < y for x, y in zip(neg, neg[1:]))


def test_asym_binarises_at_half():
    # [C] 0.7 counts as correct, 0.2 as wrong: identical to rewards (1, 0)
    assert torch.equal(adv([0.7, 0.2], [0, 0], "asym_power"), adv([1.0, 0.0], [0, 0], "asym_power"))


@pytest.mark.parametrize("mode", ["grpo_std", "mean_only", "asym_power", "sign"])
@pytest.mark.parametrize("ddof", [0, 1])
def test_vectorised_matches_slow_loop_uneven_groups(mode, ddof):
    gen = torch.Generator().manual_seed(1)
    sizes = [1, 2, 3, 5, 8, 8, 13, 4]
    groups = [gid * 7 + 3 for gid, s in enumerate(sizes) for _ in range(s)]  # non-contiguous ids
    perm = torch.randperm(len(groups), generator=gen)  # groups interleaved, not sorted
    groups = [groups[i] for i in perm]
    rewards = torch.rand(len(groups), generator=gen)
    rewards = torch.where(torch.rand(len(groups), generator=gen) < 0.5, (rewards > 0.5).double(), rewards.double())
    fast = compute_advantages(rewards, torch.tensor(groups), mode, ddof=ddof)
    slow = slow_advantages(rewards.tolist(), groups, mode, ddof=ddof)
    assert torch.allclose(fast, slow, atol=1e-9)


def test_dtype_and_errors():
    a = compute_advantages(torch.tensor([1, 0]), torch.tensor([0, 0]), "grpo_std")
    assert a.dtype == torch.float32
    assert compute_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), "grpo_std").dtype == torch.float32
    with pytest.raises(ValueError):
        compute_advantages(torch.tensor([1.0]), torch.tensor([0]), "rloo")
    with pytest.raises(ValueError):
        compute_advantages(torch.tensor([1.0]), torch.tensor([0]), "grpo_std", ddof=2)
