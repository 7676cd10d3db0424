"""UEC-RL controller and replay buffer: docs/algorithms.md#uec_rl and #checked-properties 13-16."""
import pytest
import torch

from rlsys.algo.shaping import keep_mask, replay_admit_mask
from rlsys.config import EntropyControlConfig
from rlsys.control import ReplayBuffer, UECController, make_controller
from rlsys.control.uec import uec_rules
from rlsys.types import PromptStats


def prompt_stats(n_correct_P, G=4):
    return [PromptStats(prompt_id=f"q{i}", n_samples=G, n_correct=c, mean_reward=c / G, reward_std=0.0,
                        mean_resp_len=3.0, trunc_frac=0.0, token_entropy_mean=None, policy_version=0)
            for i, c in enumerate(n_correct_P)]


def uec(P=2, G=4, temperature=0.9, **kw):
    cfg = EntropyControlConfig(controller="uec_rl", **kw)
    return make_controller(cfg, samples_per_prompt=G, prompts_per_step=P, regular_temperature=temperature)


def test_property13_extra_samples_iff_all_wrong():
    ctl = uec(uec_extra_samples=20, uec_extra_temperature=1.2)
    d = ctl.observe(prompt_stats([0, 1, 4, 0]), policy_version=3)
    assert d.policy_version == 3
    assert d.extra_samples == (20, 0, 0, 20)
    assert d.temperature == (1.2, 0.9, 0.9, 1.2)
    assert d.entropy_coef == (0.0,) * 4  # no entropy term in UEC-RL's loss


def test_rule_strings_paper_default_and_code_compat():
    assert uec_rules(False, 1.0) == ("nonzero_adv", "positive_only", "positive_gt:1")
    assert uec_rules(True, 1.0) == ("abs_gt:0.05", "abs_gt:1", "abs_gt:1")
    assert uec_rules(False, 0.5) == ("nonzero_adv", "positive_only", "positive_gt:0.5")
    d = uec().observe(prompt_stats([0, 2]), 0)
    assert (d.keep_rule_regular, d.keep_rule_explore, d.replay_admit_rule) == (
        "nonzero_adv", "positive_only", "positive_gt:1")
    d = uec(uec_code_compat=True).observe(prompt_stats([0, 2]), 0)
    assert (d.keep_rule_regular, d.keep_rule_explore, d.replay_admit_rule) == (
        "abs_gt:0.05", "abs_gt:1", "abs_gt:1")


@pytest.mark.parametrize("code_compat", [False, True])
def test_rule_strings_are_understood_by_algo_shaping(code_compat):
    # G = 4, one correct, ddof 1: A = (1.5, -0.5, -0.5, -0.5)
    adv_B = torch.tensor([1.5, -0.5, -0.5, -0.5])
    regular, explore, admit = uec_rules(code_compat, 1.0)
    assert keep_mask(adv_B, regular).tolist() == [True] * 4  # all non-zero, all |A| > 0.05
    assert keep_mask(adv_B, explore).tolist() == [True, False, False, False]  # A > 0 / |A| > 1
    assert replay_admit_mask(adv_B, admit).tolist() == [True, False, False, False]
    # code-compat admission also lets in the wrong sample of an easy group: 3 of 4 correct
    easy_B = torch.tensor([0.5, 0.5, 0.5, -1.5])
    assert replay_admit_mask(easy_B, admit).tolist() == [False, False, False, code_compat]


def test_replay_now_every_f_steps_never_at_step_zero():
    ctl = uec(uec_replay_every=5)
    flags = [ctl.observe(prompt_stats([1]), k).replay_now for k in range(12)]
    assert [k for k, f in enumerate(flags) if f] == [5, 10]
    never = uec(uec_replay_every=0)
    assert not any(never.observe(prompt_stats([1]), k).replay_now for k in range(12))


def test_property16_no_extra_no_replay_is_grpo_with_nonzero_filter():
    ctl = uec(uec_extra_samples=0, uec_replay_every=0)
    for k in range(11):
        d = ctl.observe(prompt_stats([0, 0, 3]), k)
        assert d.extra_samples == (0, 0, 0) and d.temperature == (0.9, 0.9, 0.9)
        assert not d.replay_now and d.entropy_coef == (0.0, 0.0, 0.0)
        assert d.keep_rule_regular == "nonzero_adv"


def test_replay_capacity_and_unit_from_config():
    ctl = uec(P=2, G=4, uec_replay_size=2.0)  # P*G = 8 -> s' = 16
    assert isinstance(ctl, UECController)
    assert ctl.replay_unit == 8 and ctl.replay_capacity == 16


def test_property15_fifo_keeps_newest_capacity_items():
    buf = ReplayBuffer(capacity=16, seed=0)
    buf.add(range(10))
    buf.add(range(10, 21))  # 16 + 5 added
    assert len(buf) == 16
    assert buf.sample_for_update(8) == list(range(5, 21))  # full -> whole buffer, oldest first


def test_sample_for_update_partial_buffer_is_uniform_subset_of_whole_units():
    buf = ReplayBuffer(capacity=16, seed=0)
    buf.add(range(7))
    assert not buf.ready(8) and buf.sample_for_update(8) == []
    assert buf.ready(3)
    picked = buf.sample_for_update(3)  # floor(7 / 3) * 3 = 6
    assert len(picked) == 6 and len(set(picked)) == 6 and set(picked) <= set(range(7))
    assert picked == sorted(picked)  # FIFO order kept
    assert len(buf) == 7  # replay does not consume
    counts = [0] * 7  # uniform: each of 7 items is left out 1/7 of the time
    for _ in range(700):
        for i in buf.sample_for_update(3):
            counts[i] += 1
    assert all(500 < c < 700 for c in counts)  # expected 600 each


def test_replay_update_needs_due_step_and_enough_samples():
    ctl, buf = uec(P=2, G=4, uec_replay_every=2), ReplayBuffer(capacity=16, seed=0)
    fired = []
    for k, added in enumerate([3, 3, 3, 3, 3]):  # sizes after add: 3, 6, 9, 12, 15
        buf.add(range(added))
        d = ctl.observe(prompt_stats([1]), k)
        fired.append(d.replay_now and buf.ready(ctl.replay_unit))
    assert fired == [False, False, True, False, True]  # step 2 (9 >= 8), step 4 (15 >= 8)


def test_replay_buffer_state_dict_round_trip_resumes_same_samples():
    a = ReplayBuffer(capacity=10, seed=3)
    a.add(range(9))
    a.sample_for_update(2)
    b = ReplayBuffer(capacity=1, seed=99)
    state = a.state_dict()
    state["rng_state"] = [state["rng_state"][0], list(state["rng_state"][1]), state["rng_state"][2]]
    b.load_state_dict(state)  # also after tuples became lists (e.g. a JSON-like checkpoint)
    assert len(b) == 9 and b.capacity == 10
    for _ in range(3):
        assert a.sample_for_update(2) == b.sample_for_update(2)
    a.add([100, 101])
    b.add([100, 101])
    assert a.sample_for_update(4) == b.sample_for_update(4) == list(range(1, 9)) + [100, 101]
