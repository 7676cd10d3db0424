"""AER controller: docs/algorithms.md#aer and #checked-properties 5-8, plus the call order of
#entropy-controller."""
import math

import pytest

from rlsys.config import EntropyControlConfig
from rlsys.control.aer import AERController, LOG_FLOOR_FRACTION, difficulty_weight, next_alpha
from tests.unit.control_helpers import learner_stats, prompt_stats


def aer(**kw):
    return AERController(EntropyControlConfig(controller="aer", **kw))


def test_difficulty_weight_hand_values():
    # indicator, rho = 0.5: hard iff p <= 0.5; solved prompts never regularised
    assert [difficulty_weight(p, "indicator", 0.5) for p in (0, 0.25, 0.5, 0.75, 1)] == [1, 1, 1, 0, 0]
    assert difficulty_weight(1.0, "indicator", 1.0) == 0.0  # p = 1 -> 0 even when rho = 1
    assert [difficulty_weight(p, "linear", 0.5) for p in (0, 0.25, 0.75, 1)] == [1, 0.75, 0.25, 0]
    with pytest.raises(ValueError):
        difficulty_weight(0.5, "cubic", 0.5)


@pytest.mark.parametrize("update", ["additive", "log"])
def test_property5_zero_alpha_zero_lr_is_grpo(update):
    ctl = aer(aer_alpha_init=0.0, aer_alpha_lr=0.0, aer_update=update)
    for entropy in (1.0, 0.01, 0.0, 5.0):  # below and above any target
        d = ctl.observe(prompt_stats([0, 1, 2, 4]), 0)
        assert d.entropy_coef == (0.0, 0.0, 0.0, 0.0)
        ctl.record_learner_stats(learner_stats(entropy))
    assert ctl.alpha == 0.0


def test_property6_additive_direction_and_bounds():
    # H_0 = 1.0, tau = 0.4 -> H* = 0.4; eta = 1e-3; alpha_0 = 1e-3
    ctl = aer(aer_alpha_init=1e-3, aer_alpha_lr=1e-3, aer_alpha_max=1e-2, aer_tau=0.4)
    ctl.record_learner_stats(learner_stats(1.0))  # error 0.4 - 1.0 = -0.6 -> 1e-3 - 6e-4 = 4e-4
    assert ctl.alpha == pytest.approx(4e-4)
    ctl.record_learner_stats(learner_stats(0.3))  # below target: error +0.1 -> 4e-4 + 1e-4 = 5e-4
    assert ctl.alpha == pytest.approx(5e-4)
    ctl.record_learner_stats(learner_stats(0.9))  # above: error -0.5 -> 5e-4 - 5e-4 = 0 (clip at 0)
    assert ctl.alpha == pytest.approx(0.0, abs=1e-15)
    ctl.record_learner_stats(learner_stats(3.0))
    assert ctl.alpha == 0.0  # never negative
    for _ in range(200):  # entropy collapsed: error +0.4 per step, 4e-4 each -> capped at 1e-2
        ctl.record_learner_stats(learner_stats(0.0))
    assert ctl.alpha == 1e-2


def test_property6_log_space_hand_values():
    floor = LOG_FLOOR_FRACTION * 1e-2  # 1e-5
    assert next_alpha(0.0, math.log(2), 1.0, 1e-2, "log") == pytest.approx(2 * floor)  # restart at floor
    assert next_alpha(0.0, -1.0, 1.0, 1e-2, "log") == 0.0  # above target at 0: stays 0
    assert next_alpha(0.0, 1.0, 0.0, 1e-2, "log") == 0.0  # eta = 0: no move (property 5)
    assert next_alpha(1e-3, -math.log(2), 1.0, 1e-2, "log") == pytest.approx(5e-4)
    assert next_alpha(1.5e-5, -math.log(2), 1.0, 1e-2, "log") == 0.0  # 7.5e-6 < floor -> 0
    assert next_alpha(8e-3, math.log(2), 1.0, 1e-2, "log") == 1e-2  # 1.6e-2 capped
    assert next_alpha(1e-3, 1e6, 1.0, 1e-2, "log") == 1e-2  # huge error stays finite


def test_property7_h0_frozen_after_first_measurement_and_survives_state_dict():
    ctl = aer(aer_tau=0.4)
    ctl.observe(prompt_stats([0]), 0)
    assert "entropy_initial" not in ctl.observe(prompt_stats([0]), 0).globals  # unknown before step 0's stats
    ctl.record_learner_stats(learner_stats(1.5))
    for entropy in (0.2, 3.0, 0.9):
        ctl.record_learner_stats(learner_stats(entropy))
    assert ctl.h0 == 1.5 and ctl.target == pytest.approx(0.6)
    other = aer(aer_tau=0.4)
    other.load_state_dict(ctl.state_dict())
    assert other.h0 == 1.5 and other.target == pytest.approx(0.6)
    other.record_learner_stats(learner_stats(7.0))
    assert other.h0 == 1.5


def test_h0_warmup_average_holds_alpha_until_frozen():
    # H_0 = mean(1, 2, 3) = 2 -> H* = 0.8; alpha held at 1e-3 for the first two batches
    ctl = aer(aer_warmup_batches=3, aer_alpha_init=1e-3, aer_alpha_lr=1e-3, aer_tau=0.4)
    ctl.record_learner_stats(learner_stats(1.0))
    ctl.record_learner_stats(learner_stats(2.0))
    assert ctl.h0 is None and ctl.alpha == 1e-3
    ctl.record_learner_stats(learner_stats(3.0))  # error 0.8 - 3.0 = -2.2 -> 1e-3 - 2.2e-3 -> 0
    assert ctl.h0 == pytest.approx(2.0) and ctl.alpha == 0.0


def test_property8_lambda_zero_when_solved_and_monotone_in_p():
    G = 8
    for rule in ("indicator", "linear"):
        ctl = aer(aer_alpha_init=4e-3, aer_weight=rule, aer_rho=0.5)
        coefs = ctl.observe(prompt_stats(list(range(G + 1)), G=G), 0).entropy_coef  # p = 0, 1/8, ..., 1
        assert coefs[-1] == 0.0
        assert all(a >= b for a, b in zip(coefs, coefs[1:]))  # never increases with p
        if rule == "indicator":
            assert set(coefs) == {0.0, 4e-3}
            assert coefs[:5] == (4e-3,) * 5 and coefs[5:] == (0.0,) * 4  # p <= 4/8 is hard
        else:
            assert coefs[2] == pytest.approx(4e-3 * 0.75)  # p = 2/8 -> w = 0.75


def test_ordering_lambda_uses_alpha_k_and_alpha_next_uses_step_k_entropy():
    # alpha_0 = 5e-3, eta = 1e-3, tau = 0.4, rho = 0.5
    ctl = aer(aer_alpha_init=5e-3, aer_alpha_lr=1e-3, aer_tau=0.4)
    d0 = ctl.observe(prompt_stats([0, 4]), 0)
    assert d0.entropy_coef == (5e-3, 0.0)  # step 0 uses alpha_0
    assert d0.globals == {"coef_global": 5e-3}  # H_0 not measured yet
    ctl.record_learner_stats(learner_stats(1.0))  # H_0 = 1.0 (this measurement), H* = 0.4
    assert d0.entropy_coef == (5e-3, 0.0)  # already-issued directives unchanged
    d1 = ctl.observe(prompt_stats([1, 3]), 1)  # alpha_1 = 5e-3 + 1e-3 * (0.4 - 1.0) = 4.4e-3
    assert d1.entropy_coef == (pytest.approx(4.4e-3), 0.0)  # p = .25 hard, p = .75 not
    assert d1.globals["entropy_initial"] == 1.0
    assert d1.globals["entropy_target"] == pytest.approx(0.4)
    assert d1.globals["entropy_error"] == pytest.approx(-0.6)
    ctl.record_learner_stats(learner_stats(0.2))  # alpha_2 = 4.4e-3 + 1e-3 * 0.2 = 4.6e-3
    d2 = ctl.observe(prompt_stats([0]), 2)
    assert d2.entropy_coef == (pytest.approx(4.6e-3),)
    assert d2.globals["entropy_error"] == pytest.approx(0.2)
    assert ctl.h0 == 1.0  # from the first measurement only


def test_alpha_init_is_clipped_into_range():
    assert aer(aer_alpha_init=0.5, aer_alpha_max=1e-2).alpha == 1e-2
