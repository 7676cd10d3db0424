"""Reward shaping and filters (docs/algorithms.md#checked-properties 14 keep rules, 16, 17, 19)."""
import itertools

import pytest
import torch

from rlsys.algo.advantages import compute_advantages
from rlsys.algo.loss import LossSpec, policy_loss
from rlsys.algo.shaping import (fill_informative, informative_groups, keep_mask, overlong_penalty,
                                overlong_positive_mask, replay_admit_mask)


def test_overlong_penalty_dapo():
    # Property 17 with L_max = 20, L_cache = 8: window starts at 12.
    # 10 -> 0, 12 -> 0, 14 -> (12-14)/8 = -0.25, 16 (middle) -> -0.5, 20 -> -1, 25 -> -1
    lens = torch.tensor([10, 12, 14, 16, 20, 25])
    assert torch.allclose(overlong_penalty(lens, 20, 8), torch.tensor([0.0, 0.0, -0.25, -0.5, -1.0, -1.0]))
    assert torch.equal(overlong_penalty(lens, 20, 0), torch.zeros(6))  # cache 0 = off
    with pytest.raises(ValueError):
        overlong_penalty(lens, 20, 30)


def test_informative_groups():
    n_correct, n = torch.tensor([0, 1, 4, 3, 0]), torch.tensor([4, 4, 4, 4, 1])
    assert informative_groups(n_correct, n).tolist() == [False, True, False, True, False]


def test_explore_keep_rules_with_twenty_extra_samples():
    # Property 14. G' = 20, k correct, unbiased std: A+ = sqrt((1-p)/p * 19/20), A- = -sqrt(p/(1-p) * 19/20).
    # |A+| > 1 <=> p < 19/39 = 0.487 <=> k <= 9; |A-| > 1 <=> p > 20/39 = 0.513 <=> k >= 11; k = 10: |A| = 0.975.
    for k in range(1, 20):
        correct = torch.tensor([1.0] * k + [0.0] * (20 - k))
        adv = compute_advantages(correct, torch.zeros(20, dtype=torch.long), "grpo_std", ddof=1)
        assert torch.equal(keep_mask(adv, "positive_only"), correct.bool())
        kept = keep_mask(adv, "abs_gt:1")
        expected = correct.bool() if k <= 9 else (torch.zeros(20, dtype=torch.bool) if k == 10 else ~correct.bool())
        assert torch.equal(kept, expected), k


def test_keep_and_replay_rules():
    adv = torch.tensor([0.0, 0.5, -0.5, 1.5, -1.5, 0.04])
    assert keep_mask(adv, "all").all()
    assert keep_mask(adv, "nonzero_adv").tolist() == [False, True, True, True, True, True]
    assert keep_mask(adv, "positive_only").tolist() == [False, True, False, True, False, True]
    assert keep_mask(adv, "abs_gt:0.05").tolist() == [False, True, True, True, True, False]
    assert keep_mask(adv, "nonnegative").tolist() == [True, True, False, True, False, True]
    assert not replay_admit_mask(adv, "none").any()
    assert replay_admit_mask(adv, "positive_gt:1").tolist() == [False, False, False, True, False, False]
    assert replay_admit_mask(adv, "abs_gt:1").tolist() == [False, False, False, True, True, False]
    for bad in ("some", "abs_gt", "abs_gt:x", "positive_gt:1"):
        with pytest.raises(ValueError):
            keep_mask(adv, bad)
    with pytest.raises(ValueError):
        replay_admit_mask(adv, "nonzero_adv")


def test_nonzero_adv_filter_leaves_grpo_gradient_unchanged():
    # Property 16 (filter part): with global counts of the full batch, dropping the zero-advantage samples
    # (degenerate groups) changes neither the loss nor the gradient of the kept rows.
    g = torch.Generator().manual_seed(0)
    rewards = torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0])  # groups 1 and 2 degenerate
    adv = compute_advantages(rewards, torch.arange(16) // 4, "grpo_std")
    logp = -2 * torch.rand(16, 5, generator=g, dtype=torch.float64)
    old = logp + 0.3 * torch.randn(16, 5, generator=g, dtype=torch.float64)
    mask, N = torch.ones(16, 5, dtype=torch.float64), 80
    kept = keep_mask(adv, "nonzero_adv")
    assert kept.tolist() == [True] * 4 + [False] * 8 + [True] * 4
    grads = []
    for rows in (torch.arange(16), kept.nonzero().squeeze(1)):
        x = logp[rows].clone().requires_grad_(True)
        loss, _ = policy_loss(x, old[rows], adv[rows].double(), mask[rows], torch.zeros_like(x),
                              torch.zeros(len(rows)), LossSpec(), N, 16)
        loss.backward()
        grads.append((loss.detach(), x.grad[kept[rows]]))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-12)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-12)


def _fake_sampler(accuracies, n=4):
    """draw(k) hands out the next k groups of a fixed stream; group = its position."""
    stream = iter(enumerate(accuracies))

    def draw(k):
        return [(i, round(p * n), n) for i, p in itertools.islice(stream, k)]
    return draw


def test_dynamic_sampling_fill():
    # Property 19: groups with p in {0,1} are never emitted; the batch is filled or exhaustion reported.
    accs = [0, 0.25, 1, 0.5, 0, 0.75, 1, 0.5, 0.25, 0.25]
    kept, exhausted = fill_informative(_fake_sampler(accs), target=4, max_rounds=5)
    # round 1 draws 0..3 -> keeps 1, 3; round 2 draws 4, 5 -> keeps 5; round 3 draws 6 -> none;
    # round 4 draws 7 -> keeps 7: 4 groups
    assert kept == [1, 3, 5, 7] and not exhausted
    kept, exhausted = fill_informative(_fake_sampler(accs), target=4, max_rounds=2)
    assert kept == [1, 3, 5] and exhausted
    kept, exhausted = fill_informative(_fake_sampler([0, 1, 0.5]), target=4, max_rounds=10)
    assert kept == [2] and exhausted  # the source ran dry


def test_overlong_positive_mask_marks_only_truncated_samples_with_positive_advantage():
    adv = torch.tensor([1.0, 1.0, -1.0, 0.0, 0.3])
    truncated = torch.tensor([True, False, True, True, True])
    assert overlong_positive_mask(adv, truncated).tolist() == [True, False, False, False, True]
