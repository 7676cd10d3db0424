"""Reward shaping and filters (docs/algorithms.md#checked-properties 14 keep rules, 17). Property 16 (the
non-zero-advantage filter through batch assembly and the loss) is in test_control_uec.py, property 19 (the
dynamic-sampling loop of the sampler that runs) in test_dynamic_sampling.py."""
import typing

import pytest
import torch

from rlsys.algo.advantages import compute_advantages
from rlsys.algo.shaping import (ADMIT_MASKS, KEEP_MASKS, AdmitRule, KeepRule, informative_groups, keep_mask,
                                overlong_penalty, overlong_positive_mask, replay_admit_mask)
from rlsys.types import AdmitKind, KeepKind


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
        assert torch.equal(keep_mask(adv, KeepRule("positive_only")), correct.bool())
        kept = keep_mask(adv, KeepRule("abs_gt", 1.0))
        expected = correct.bool() if k <= 9 else (torch.zeros(20, dtype=torch.bool) if k == 10 else ~correct.bool())
        assert torch.equal(kept, expected), k


def test_keep_and_replay_rules():
    adv = torch.tensor([0.0, 0.5, -0.5, 1.5, -1.5, 0.04])
    assert keep_mask(adv, KeepRule()).all()  # the default rule is "all"
    assert keep_mask(adv, KeepRule("nonzero_adv")).tolist() == [False, True, True, True, True, True]
    assert keep_mask(adv, KeepRule("positive_only")).tolist() == [False, True, False, True, False, True]
    assert keep_mask(adv, KeepRule("abs_gt", 0.05)).tolist() == [False, True, True, True, True, False]
    assert keep_mask(adv, KeepRule("nonnegative")).tolist() == [True, True, False, True, False, True]
    assert not replay_admit_mask(adv, AdmitRule()).any()  # the default rule is "none"
    assert replay_admit_mask(adv, AdmitRule("positive_gt", 1.0)).tolist() == [False, False, False, True, False, False]
    assert replay_admit_mask(adv, AdmitRule("abs_gt", 1.0)).tolist() == [False, False, False, True, True, False]


def test_every_rule_kind_has_exactly_one_mask():
    assert set(KEEP_MASKS) == set(typing.get_args(KeepKind))
    assert set(ADMIT_MASKS) == set(typing.get_args(AdmitKind))


@pytest.mark.parametrize("make, match", [
    (lambda: KeepRule("some"), "must be one of"),
    (lambda: KeepRule("positive_gt", 1.0), "must be one of"),  # an admission kind is no keep kind
    (lambda: AdmitRule("nonzero_adv"), "must be one of"),
    (lambda: KeepRule("nonzero_adv", 0.5), "takes no threshold"),
    (lambda: AdmitRule("abs_gt", float("nan")), "must be finite"),
])
def test_malformed_rules_are_refused_when_built(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_overlong_positive_mask_marks_only_truncated_samples_with_positive_advantage():
    adv = torch.tensor([1.0, 1.0, -1.0, 0.0, 0.3])
    truncated = torch.tensor([True, False, True, True, True])
    assert overlong_positive_mask(adv, truncated).tolist() == [True, False, False, False, True]
