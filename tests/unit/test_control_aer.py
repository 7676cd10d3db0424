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
    assert d0.globals == {"coef_global": 5e-3, "aer/regularised_prompts": 1.0}  # H_0 not measured yet
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


# ---------------------------------------------------------------- entropy population (aer_entropy_population)

def stats_with_prompts(entropy_all, rows):
    """LearnerStats with per-sample (prompt id, token-mean entropy, tokens), as the driver passes them."""
    from rlsys.types import LearnerStats

    pids, ents, toks = zip(*rows) if rows else ((), (), ())
    return LearnerStats(policy_version=1, scalars={"entropy/token_mean": entropy_all},
                        sample_index=tuple(range(len(rows))), entropy_token_mean_per_sample=ents,
                        num_tokens_per_sample=toks, prompt_id_per_sample=pids)


# Step of prompts q0 (p = 0, hard), q1 (p = 1/4, hard), q2 (p = 3/4, easy) with G = 4, rho = 0.5.
# Samples: q0 entropy 2.0 over 3 tokens, q1 1.0 over 1 token, q2 0.2 over 4 tokens.
# all tokens:         (6 + 1 + 0.8) / 8 = 0.975 (the learner's entropy/token_mean)
# regularised q0, q1: (6 + 1) / 4 = 1.75
ROWS = [("q0", 2.0, 3), ("q1", 1.0, 1), ("q2", 0.2, 4)]


def test_population_token_entropy_hand_values():
    from rlsys.control.aer import population_token_entropy

    s = stats_with_prompts(0.975, ROWS)
    assert population_token_entropy(s, {"q0", "q1"}) == pytest.approx(1.75)
    assert population_token_entropy(s, {"q0", "q1", "q2"}) == pytest.approx(0.975)
    assert population_token_entropy(s, {"q9"}) is None  # no token of the population
    with pytest.raises(ValueError, match="prompt_id_per_sample"):
        population_token_entropy(learner_stats_without_ids(), {"q0"})


def learner_stats_without_ids():
    from rlsys.types import LearnerStats

    return LearnerStats(policy_version=1, scalars={"entropy/token_mean": 1.0}, sample_index=(0,),
                        entropy_token_mean_per_sample=(1.0,), num_tokens_per_sample=(2,))


@pytest.mark.parametrize("population, h0", [("all", 0.975), ("regularised", 1.75)])
def test_population_sets_h0_and_alpha_and_both_means_are_logged(population, h0):
    # tau = 0.4, eta = 1e-3, alpha_0 = 2e-3; step 0 measures h0 and updates alpha with it:
    # alpha_1 = 2e-3 + 1e-3 * (0.4 * h0 - h0) = 2e-3 - 0.6e-3 * h0 (all: 1.415e-3, regularised: 0.95e-3)
    ctl = aer(aer_entropy_population=population, aer_alpha_init=2e-3, aer_alpha_lr=1e-3, aer_tau=0.4)
    d0 = ctl.observe(prompt_stats([0, 1, 3]), 0)
    assert d0.globals["aer/regularised_prompts"] == 2.0  # q0, q1 (p <= 0.5)
    assert "aer/entropy_all" not in d0.globals  # nothing measured yet
    ctl.record_learner_stats(stats_with_prompts(0.975, ROWS))
    assert ctl.h0 == pytest.approx(h0)
    assert ctl.alpha == pytest.approx(2e-3 - 0.6e-3 * h0)
    g = ctl.observe(prompt_stats([0, 1, 3]), 1).globals
    assert g["aer/entropy_all"] == pytest.approx(0.975)  # both logged whatever the setting
    assert g["aer/entropy_regularised"] == pytest.approx(1.75)
    assert g["entropy_error"] == pytest.approx(0.4 * h0 - h0)  # the error is the population's


def test_regularised_set_ignores_alpha_zero_and_follows_the_weight_rule():
    # alpha = 0: every lambda is 0, yet the regularised prompts are those with w(p) > 0
    ctl = aer(aer_entropy_population="regularised", aer_alpha_init=0.0, aer_weight="linear")
    d = ctl.observe(prompt_stats([0, 1, 3, 4]), 0)  # linear: w = 1 - p > 0 for every unsolved prompt
    assert d.entropy_coef == (0.0,) * 4 and d.globals["aer/regularised_prompts"] == 3.0
    ctl.record_learner_stats(stats_with_prompts(0.975, ROWS))  # q0, q1, q2 all regularised -> all tokens
    assert ctl.h0 == pytest.approx(0.975)


def test_regularised_step_without_regularised_tokens_holds_alpha_and_h0():
    ctl = aer(aer_entropy_population="regularised", aer_alpha_init=1e-3, aer_alpha_lr=1e-3)
    ctl.observe(prompt_stats([3, 4]), 0)  # p = .75 and 1: nothing regularised
    ctl.record_learner_stats(stats_with_prompts(0.5, [("q0", 0.5, 2), ("q1", 0.5, 2)]))
    assert ctl.h0 is None and ctl.alpha == 1e-3 and ctl.last_entropy_regularised is None
    g = ctl.observe(prompt_stats([0, 4]), 1).globals
    assert g["aer/entropy_all"] == 0.5 and "aer/entropy_regularised" not in g  # empty set: omitted
    ctl.record_learner_stats(stats_with_prompts(0.5, [("q0", 2.0, 2), ("q1", 0.5, 2)]))
    assert ctl.h0 == 2.0  # the first step that measured the population


def test_all_population_is_unchanged_without_prompt_ids_and_regularised_needs_them():
    ctl = aer()  # default: all tokens; stats without prompt ids (e.g. a caller other than the driver)
    ctl.observe(prompt_stats([0]), 0)
    ctl.record_learner_stats(learner_stats_without_ids())
    assert ctl.h0 == 1.0 and ctl.last_entropy_regularised is None
    ctl = aer(aer_entropy_population="regularised")
    ctl.observe(prompt_stats([0]), 0)
    with pytest.raises(ValueError, match="prompt_id_per_sample"):
        ctl.record_learner_stats(learner_stats_without_ids())


def test_population_state_round_trip_old_checkpoints_and_mismatch():
    ctl = aer(aer_entropy_population="regularised")
    ctl.observe(prompt_stats([0, 1, 3]), 0)
    ctl.record_learner_stats(stats_with_prompts(0.975, ROWS))
    state = ctl.state_dict()
    assert state["entropy_population"] == "regularised" and state["last_entropy_regularised"] == pytest.approx(1.75)
    again = aer(aer_entropy_population="regularised")
    again.load_state_dict(state)
    assert again.h0 == pytest.approx(1.75) and again.last_entropy_all == pytest.approx(0.975)
    with pytest.raises(ValueError, match="aer_entropy_population"):
        aer().load_state_dict(state)  # H_0 over another population
    old = {k: v for k, v in aer().state_dict().items()
           if k not in ("entropy_population", "last_entropy_all", "last_entropy_regularised")}
    aer().load_state_dict(old)  # a checkpoint from before the switch measured all tokens
    with pytest.raises(ValueError, match="'all'"):
        aer(aer_entropy_population="regularised").load_state_dict(old)
