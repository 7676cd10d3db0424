"""none / asymgrpo / fixed / skywork controllers (docs/algorithms.md#entropy_fixed, #skywork, #asymgrpo) and
make_controller."""
import pytest

from rlsys.config import EntropyControlConfig
from rlsys.control import (AsymGRPOController, FixedController, NoneController, SkyworkController,
                           make_controller)
from rlsys.types import AdmitRule, KeepRule, LearnerStats
from tests.unit.control_helpers import learner_stats, prompt_stats


@pytest.mark.parametrize("cls", [NoneController, AsymGRPOController])
def test_none_and_asymgrpo_emit_zero_coefs_and_no_directives(cls):
    ctl = cls()
    d = ctl.observe(prompt_stats([0, 2, 4]), policy_version=7)
    assert d.policy_version == 7
    assert d.prompt_ids == ("q0", "q1", "q2")
    assert d.entropy_coef == (0.0, 0.0, 0.0)
    assert d.extra_samples == () and d.temperature == ()
    assert d.keep_rule_regular == d.keep_rule_explore == KeepRule("all")
    assert d.replay_admit_rule == AdmitRule("none") and not d.replay_now
    assert d.globals == {}
    ctl.record_learner_stats(learner_stats(0.5))  # ignored, no error


def test_fixed_applies_constant_coef_to_every_prompt_every_step():
    ctl = FixedController(1e-3)
    for entropy in (2.0, 0.01):
        d = ctl.observe(prompt_stats([0, 4, 1]), policy_version=0)
        assert d.entropy_coef == (1e-3, 1e-3, 1e-3)
        assert d.globals["coef_global"] == 1e-3
        ctl.record_learner_stats(learner_stats(entropy))


def test_skywork_up_down_and_gate():
    # c_0 = 0, delta = 0.005, H_tgt = 0.2
    ctl = SkyworkController(coef=0.0, target=0.2, coef_step=0.005, coef_min=0.0, coef_max=1.0)
    d0 = ctl.observe(prompt_stats([0, 1]), 0)
    assert d0.entropy_coef == (0.0, 0.0)  # no previous entropy -> gate closed
    ctl.record_learner_stats(learner_stats(0.1))  # 0.1 <= 0.2 -> c_1 = 0 + 0.005, measured even at coef 0
    d1 = ctl.observe(prompt_stats([0, 1]), 1)
    assert d1.entropy_coef == (0.005, 0.005)  # gate open: H_0 = 0.1 <= 0.2
    assert d1.globals["entropy_error"] == pytest.approx(0.2 - 0.1)
    ctl.record_learner_stats(learner_stats(0.3))  # above -> c_2 = 0.005 - 0.005 = 0
    assert ctl.coef_state == pytest.approx(0.0)
    ctl.record_learner_stats(learner_stats(0.2))  # equal counts as "at or below" -> up: 0.005
    assert ctl.coef_state == pytest.approx(0.005)
    ctl.record_learner_stats(learner_stats(0.25))  # c = 0, gate closed by 0.25 > 0.2
    ctl.record_learner_stats(learner_stats(0.15))  # c = 0.005, but the gate uses H = 0.15 -> open
    assert ctl.observe(prompt_stats([3]), 2).entropy_coef == (pytest.approx(0.005),)


def test_skywork_gate_closed_while_above_target_even_with_positive_coef():
    ctl = SkyworkController(coef=0.05, target=0.2, coef_step=0.01, coef_min=0.0, coef_max=1.0)
    ctl.record_learner_stats(learner_stats(0.5))  # c: 0.05 -> 0.04, previous H above target
    d = ctl.observe(prompt_stats([0]), 0)
    assert d.entropy_coef == (0.0,)
    assert d.globals["coef_adaptive"] == pytest.approx(0.04)


def test_skywork_clamps_to_min_and_max():
    ctl = SkyworkController(coef=0.0, target=1.0, coef_step=0.004, coef_min=0.001, coef_max=0.01)
    assert ctl.coef_state == 0.001  # c_0 clamped up to coef_min
    for _ in range(5):  # 0.001 + 5*0.004 = 0.021 -> clamped at 0.01
        ctl.record_learner_stats(learner_stats(0.5))
    assert ctl.coef_state == 0.01
    for _ in range(10):  # far above target: down to coef_min, never below
        ctl.record_learner_stats(learner_stats(3.0))
    assert ctl.coef_state == 0.001


def test_entropy_driven_controller_refuses_missing_entropy():
    ctl = SkyworkController(0.0, 0.2, 0.005, 0.0, 1.0)
    bad = LearnerStats(policy_version=1, scalars={}, sample_index=(), entropy_token_mean_per_sample=(),
                       num_tokens_per_sample=())
    with pytest.raises(ValueError, match="entropy/token_mean"):
        ctl.record_learner_stats(bad)


@pytest.mark.parametrize("name,cls", [("none", "NoneController"), ("asymgrpo", "AsymGRPOController"),
                                      ("fixed", "FixedController"), ("skywork", "SkyworkController"),
                                      ("aer", "AERController"), ("uec_rl", "UECController"),
                                      ("hora", "HORAController")])
def test_make_controller_picks_by_name(name, cls):
    ctl = make_controller(EntropyControlConfig(controller=name), samples_per_prompt=4, prompts_per_step=2)
    assert type(ctl).__name__ == cls and ctl.name == name


def test_make_controller_rejects_unknown_name():
    with pytest.raises(ValueError, match="controller"):
        make_controller(EntropyControlConfig(controller="nope"), 4, 2)


def test_load_state_dict_refuses_another_controllers_state():
    with pytest.raises(ValueError, match="fixed"):
        NoneController().load_state_dict(FixedController(0.1).state_dict())


@pytest.mark.parametrize("name", ["none", "asymgrpo", "fixed", "skywork", "aer", "uec_rl", "hora"])
def test_each_controller_class_says_what_the_driver_sizes_for_it(name):
    # Asked of the class, before any controller exists: G = 8 responses per prompt, unit P * G = 16.
    from rlsys.control import CONTROLLERS

    cfg = EntropyControlConfig(controller=name, hora_n_probe=3, uec_replay_size=1.5)
    cls = CONTROLLERS[name]
    assert cls.regular_samples_per_prompt(cfg, 8) == (3 if name == "hora" else 8)  # HORA's probe size
    assert cls.replay_capacity(cfg, 16) == (24 if name == "uec_rl" else 0)  # floor(1.5 * 16)
    assert cls.uses_batch_buffer(cfg) is (name == "uec_rl")
    assert type(cls.from_config(cfg, 8, 2, 1.0)) is cls


def test_config_accepts_every_registered_controller():
    from rlsys.config import ConfigError, load_config
    from rlsys.control import CONTROLLERS

    for name in CONTROLLERS:
        load_config(None, [f"entropy_control.controller={name}"]).validate()
    with pytest.raises(ConfigError, match="entropy_control.controller='nope'"):
        load_config(None, ["entropy_control.controller=nope"]).validate()
