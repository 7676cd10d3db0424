"""Group advantages (docs/algorithms.md#advantage-modes; #checked-properties 4 and 10-12): hand-worked values
and a slow loop."""
import math

import pytest
import torch

from rlsys.algo.advantages import (ADV_MODES, ADVANTAGE_MODES, AdvantageParams, compute_advantages,
                                   group_advantages)
from rlsys.metrics.compute import advantage_metrics


def slow_advantages(rewards, groups, mode, ddof=0, beta_pos=0.9, beta_neg=0.4, eps=1e-6, threshold=0.5,
                    nonbinary="binarise"):
    """Reference: one Python loop per group, straight from the formulas."""
    out = [0.0] * len(rewards)
    for g in set(groups):
        idx = [i for i, gi in enumerate(groups) if gi == g]
        rs = [rewards[i] for i in idx]
        n, mean = len(rs), sum(rs) / len(rs)
        binary = all(r in (0.0, 1.0) for r in rs)
        if mode in ("asym_power", "sign") and (binary or nonbinary == "binarise"):
            bp, bn = (beta_pos, beta_neg) if mode == "asym_power" else (0.0, 0.0)
            c = [1.0 if r >= threshold else 0.0 for r in rs]
            p = sum(c) / n
            for i, ci in zip(idx, c):
                out[i] = 0.0 if p in (0.0, 1.0) else (((1 - p) / p) ** bp if ci else -((p / (1 - p)) ** bn))
            continue
        if max(rs) == min(rs):
            continue
        std = math.sqrt(sum((r - mean) ** 2 for r in rs) / max(n - ddof, 1))
        for i, r in zip(idx, rs):
            out[i] = r - mean if mode == "mean_only" else (r - mean) / (std + eps)  # asym fallback: grpo_std
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


@pytest.mark.parametrize("nonbinary", ["binarise", "grpo"])
@pytest.mark.parametrize("mode", ["grpo_std", "mean_only", "asym_power", "sign"])
@pytest.mark.parametrize("ddof", [0, 1])
def test_vectorised_matches_slow_loop_uneven_groups(mode, ddof, nonbinary):
    gen = torch.Generator().manual_seed(1)
    sizes = [1, 2, 3, 5, 8, 8, 13, 4]
    groups = [gid * 7 + 3 for gid, s in enumerate(sizes) for _ in range(s)]  # non-contiguous ids
    perm = torch.randperm(len(groups), generator=gen)  # groups interleaved, not sorted
    groups = [groups[i] for i in perm]
    rewards = torch.rand(len(groups), generator=gen)
    rewards = torch.where(torch.rand(len(groups), generator=gen) < 0.5, (rewards > 0.5).double(), rewards.double())
    fast = compute_advantages(rewards, torch.tensor(groups), mode, ddof=ddof, nonbinary=nonbinary, threshold=0.4)
    slow = slow_advantages(rewards.tolist(), groups, mode, ddof=ddof, nonbinary=nonbinary, threshold=0.4)
    assert torch.allclose(fast, slow, atol=1e-9)


def test_dtype_and_errors():
    a = compute_advantages(torch.tensor([1, 0]), torch.tensor([0, 0]), "grpo_std")
    assert a.dtype == torch.float32
    assert compute_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), "grpo_std").dtype == torch.float32
    with pytest.raises(ValueError):
        compute_advantages(torch.tensor([1.0]), torch.tensor([0]), "rloo")
    with pytest.raises(ValueError):
        compute_advantages(torch.tensor([1.0]), torch.tensor([0]), "grpo_std", ddof=2)


# ---------------------------------------------------------------- AsymGRPO's [C] switches, the registry

def test_asym_threshold_moves_the_binarisation():
    # rewards (0.9, 0.7, 0.2, 0.0): at 0.5 two are correct (p = 0.5 -> +-1 for every beta);
    # at 0.8 only 0.9 is (p = 0.25 -> A+ = 3^0.9 = 2.688, A- = -(1/3)^0.4 = -0.644).
    r = [0.9, 0.7, 0.2, 0.0]
    at_half = adv(r, [0] * 4, "asym_power")
    assert torch.allclose(at_half, torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64))
    at_08 = adv(r, [0] * 4, "asym_power", threshold=0.8)
    assert at_08[0].item() == pytest.approx(2.688, abs=1e-3)
    assert at_08[1:].tolist() == pytest.approx([-0.644] * 3, abs=1e-3)
    # sign mode reads the threshold too
    assert adv(r, [0] * 4, "sign", threshold=0.8).tolist() == [1.0, -1.0, -1.0, -1.0]


def test_asym_nonbinary_binarise_or_grpo_fallback_per_group():
    # group 0 (1, 0, 0, 0) is binary: AsymGRPO under both settings (2.688, -0.644 x3).
    # group 1 (0.7, 0.2, 0.0) is not. binarise: p = 1/3 -> A+ = 2^0.9 = 1.866, A- = -(1/2)^0.4 = -0.758.
    # grpo: mean 0.3, deviations (0.4, -0.1, -0.3), population var 0.26/3 = 0.08667, std 0.29439
    #       -> (1.3587, -0.3397, -1.0190).
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.7, 0.2, 0.0], dtype=torch.float64)
    g = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    binarised = group_advantages(r, g, "asym_power", AdvantageParams(nonbinary="binarise"))
    fallback = group_advantages(r, g, "asym_power", AdvantageParams(nonbinary="grpo"))
    assert binarised.adv_B[:4].tolist() == pytest.approx([2.688, -0.644, -0.644, -0.644], abs=1e-3)
    assert torch.equal(fallback.adv_B[:4], binarised.adv_B[:4])
    assert binarised.adv_B[4:].tolist() == pytest.approx([1.866, -0.758, -0.758], abs=1e-3)
    assert fallback.adv_B[4:].tolist() == pytest.approx([1.3587, -0.3397, -1.0190], abs=1e-4)
    assert (binarised.num_groups, binarised.nonbinary_groups, binarised.fallback_groups) == (2, 1, 0)
    assert (fallback.num_groups, fallback.nonbinary_groups, fallback.fallback_groups) == (2, 1, 1)
    # the fallback is grpo_std of that group, with the configured ddof
    ddof1 = group_advantages(r, g, "asym_power", AdvantageParams(nonbinary="grpo", ddof=1))
    assert torch.allclose(ddof1.adv_B[4:], compute_advantages(r[4:], g[4:], "grpo_std", ddof=1))


def test_asym_fallback_keeps_degenerate_groups_at_zero():
    # (0.3, 0.3) is non-binary and constant: GRPO's advantage is exactly 0, under either setting
    for rule in ("binarise", "grpo"):
        out = group_advantages(torch.tensor([0.3, 0.3]), torch.tensor([0, 0]), "sign", AdvantageParams(nonbinary=rule))
        assert torch.equal(out.adv_B, torch.zeros(2)) and out.nonbinary_groups == 1


def test_fallback_share_is_logged_from_the_typed_counts():
    # 2 of 4 groups non-binary; under grpo both fell back
    r = torch.tensor([1.0, 0.0, 0.5, 0.0, 1.0, 1.0, 0.9, 0.1])
    g = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    for rule, fell_back in (("binarise", 0.0), ("grpo", 0.5)):
        out = group_advantages(r, g, "asym_power", AdvantageParams(nonbinary=rule))
        m = advantage_metrics(out.adv_B, out)
        assert m["algo/asym_nonbinary_group_frac"] == 0.5
        assert m["algo/asym_fallback_group_frac"] == fell_back
    plain = group_advantages(r, g, "grpo_std")  # a mode that does not binarise counts nothing
    assert plain.nonbinary_groups is None and plain.fallback_groups is None
    assert not any(k.startswith("algo/asym_") for k in advantage_metrics(plain.adv_B, plain))


def test_assembly_carries_the_group_counts():
    from rlsys.algo.batch import AdvantageSpec, assemble
    from rlsys.types import ControlDirectives
    from tests.unit.test_batch_assembly import sample, scored_of

    s = [sample("a", (7,), 1.0), sample("a", (8,), 0.0), sample("b", (7,), 0.7), sample("b", (8,), 0.0)]
    d = ControlDirectives(policy_version=3, prompt_ids=("a", "b"), entropy_coef=(0.0, 0.0))
    out = assemble(scored_of(s, [1.0, 0.0, 0.7, 0.0]), d, AdvantageSpec(mode="asym_power", nonbinary="grpo"))
    assert (out.advantages.num_groups, out.advantages.fallback_groups) == (2, 1)
    assert out.adv_B[2:].tolist() == pytest.approx([1.0, -1.0], abs=1e-5)  # GRPO of (0.7, 0): +-1
    high = assemble(scored_of(s, [1.0, 0.0, 0.7, 0.0]), d, AdvantageSpec(mode="asym_power", threshold=0.8))
    assert high.adv_B[2:].tolist() == [0.0, 0.0]  # 0.7 < 0.8: group b is all wrong -> degenerate


def test_registry_is_the_mode_list_and_unknown_modes_name_the_valid_ones():
    assert ADV_MODES == tuple(ADVANTAGE_MODES) == ("grpo_std", "mean_only", "asym_power", "sign")
    with pytest.raises(ValueError, match=r"'rloo': must be one of \['asym_power', 'grpo_std', 'mean_only', 'sign'\]"):
        group_advantages(torch.tensor([1.0]), torch.tensor([0]), "rloo")
    with pytest.raises(ValueError, match="nonbinary='fallback'"):
        compute_advantages(torch.tensor([1.0]), torch.tensor([0]), "sign", nonbinary="fallback")
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            compute_advantages(torch.tensor([1.0]), torch.tensor([0]), "sign", threshold=bad)


def test_empty_batch_gives_empty_advantages():
    out = group_advantages(torch.zeros(0), torch.zeros(0, dtype=torch.long), "asym_power")
    assert out.adv_B.shape == (0,) and out.num_groups == 0
    assert advantage_metrics(out.adv_B, out) == {}
