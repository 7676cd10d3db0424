"""UEC-RL controller and replay buffer: docs/algorithms.md#uec_rl and #checked-properties 13-16."""
import pytest
import torch

from rlsys.algo.batch import Trained, TrainRow, pad_rows
from rlsys.algo.shaping import keep_mask, replay_admit_mask
from rlsys.config import ConfigError, EntropyControlConfig, load_config
from rlsys.control import ReplayBuffer, UECController, make_controller
from rlsys.control.uec import uec_rules
from rlsys.orchestration.sampling import ReplayStage
from rlsys.types import LearnerStats, PromptStats, Sample


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


def test_explore_keep_option_and_code_compat_directives():
    assert uec_rules(False, 1.0, "nonnegative") == ("nonzero_adv", "nonnegative", "positive_gt:1")
    assert uec_rules(True, 1.0, "positive")[1] == "abs_gt:1"
    d = uec(uec_explore_keep="nonnegative").observe(prompt_stats([0, 2]), 0)
    assert d.keep_rule_explore == "nonnegative"
    adv_B = torch.tensor([0.0, 0.0, 1.2, -0.8])  # an extra group that found nothing gives A = 0
    assert keep_mask(adv_B, d.keep_rule_explore).tolist() == [True, True, True, False]
    assert keep_mask(adv_B, "positive_only").tolist() == [False, False, True, False]
    paper = uec(temperature=0.9).observe(prompt_stats([0]), 0)
    assert (paper.drop_overlong_positive, paper.explore_score_temperature, paper.replay_learner_logprobs) == (
        False, None, False)
    code = uec(temperature=0.9, uec_code_compat=True).observe(prompt_stats([0]), 0)
    assert (code.drop_overlong_positive, code.explore_score_temperature, code.replay_learner_logprobs) == (
        True, 0.9, True)
    assert code.temperature == (1.2,)  # still sampled at T'; only the learner's scoring changes


@pytest.mark.parametrize("overrides, expected", [
    (["entropy_control.uec_explore_keep=nonnegative"], "entropy_control.uec_explore_keep='nonnegative'"),
    (["learner.old_logprob_source=rollout"], "set learner.old_logprob_source=learner"),
])
def test_code_compat_conflicts_are_named(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(None, ["algo=uec_rl", "entropy_control.uec_code_compat=true", *overrides]).validate()


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


class RecordingLearner:
    """Stands in for the learner group of ReplayStage.maybe_replay: records each batch, advances the
    policy version like an update and reports per-sample old log-probs of -0.25 per token."""

    def __init__(self, version: int):
        self.policy_version, self.batches = version, []

    def train_step(self, batch):
        self.batches.append(batch)
        self.policy_version += 1
        tokens = batch.loss_mask_BT.sum(dim=1).long().tolist()
        return LearnerStats(policy_version=self.policy_version, scalars={"learner/loss": 0.5},
                            sample_index=tuple(batch.sample_index_B.tolist()),
                            entropy_token_mean_per_sample=(0.0,) * batch.batch_size,
                            num_tokens_per_sample=tuple(tokens),
                            old_logp_per_sample=tuple((-0.25,) * n for n in tokens))


def trained_rows(n: int, version: int, adv: float = 2.0):
    rows = tuple(TrainRow(sample=Sample(prompt_id=f"q{i}", prompt_token_ids=(1, 2), response_token_ids=(7, 8),
                                        response_logprobs=(-0.5, -0.5), response_text="", finish_reason="stop",
                                        temperature=1.0, source="regular", policy_version=version),
                          adv=adv, coef=0.0, temperature=1.0, reward=1.0, group_accuracy=0.5) for i in range(n))
    return Trained(batch=pad_rows(rows, range(n), version, False), rows=rows)


def replay_stage(ctl):
    return ReplayStage(ctl.replay_capacity, ctl.replay_unit, seed=0)


def test_property15_replay_update_only_on_a_due_step_with_enough_samples():
    ctl = uec(P=2, G=4, uec_replay_every=2)  # unit P*G = 8, capacity 16
    replay, learner = replay_stage(ctl), RecordingLearner(version=0)
    fired = []
    for k in range(5):  # 3 admitted per step: 3, 6, 9, 12, 15 held
        d = ctl.observe(prompt_stats([1]), learner.policy_version)
        trained = trained_rows(3, learner.policy_version)
        assert replay.admit(trained, learner.train_step(trained.batch), d) == 3
        replayed = replay.maybe_replay(learner, d)
        fired.append(replayed is not None)
    assert fired == [False, False, True, False, True]  # step 2 (9 >= 8), step 4 (15 >= 8); never on 1, 3
    replays = [b for b in learner.batches if b.is_replay]
    assert [b.batch_size for b in replays] == [8, 8]  # floor(9/8)*8 and floor(15/8)*8 of a partial buffer
    assert replay.updates == 2 and len(replay.buffer) == 15  # replay does not consume


def test_replay_runs_on_a_step_without_a_regular_update_and_staleness_counts_this_steps_update():
    ctl = uec(P=2, G=4, uec_replay_every=1)
    replay, learner = replay_stage(ctl), RecordingLearner(version=5)
    d0 = ctl.observe(prompt_stats([1]), 5)  # step 0: never a replay step
    trained = trained_rows(8, version=5)
    replay.admit(trained, learner.train_step(trained.batch), d0)  # learner now at 6
    assert replay.maybe_replay(learner, d0) is None
    d1 = ctl.observe(prompt_stats([1]), 6)  # step 1: due; nothing trained this step (empty regular batch)
    assert replay.admit(trained_rows(0, 6), None, d1) == 0
    stats = replay.maybe_replay(learner, d1)
    assert stats is not None and learner.batches[-1].is_replay and learner.batches[-1].batch_size == 8
    assert replay.metrics(0, stats)["replay/staleness_steps"] == 1.0  # sampled at 5, replayed onto 6
    d2 = ctl.observe(prompt_stats([1]), 7)  # step 2: a regular update (7 -> 8) first, then replay
    learner.train_step(trained_rows(1, 7).batch)
    replay.maybe_replay(learner, d2)
    assert replay.metrics(0, stats)["replay/staleness_steps"] == 3.0  # 5 -> 8: this step's update counts


@pytest.mark.parametrize("code_compat", [False, True])
def test_replay_old_logprobs_vllm_by_default_learner_in_code_compat(code_compat):
    ctl = uec(P=1, G=2, uec_replay_every=1, uec_code_compat=code_compat)
    replay, learner = replay_stage(ctl), RecordingLearner(version=0)
    d = ctl.observe(prompt_stats([1]), 0)
    assert d.replay_learner_logprobs is code_compat
    trained = trained_rows(2, 0)
    replay.admit(trained, learner.train_step(trained.batch), d)
    replay.maybe_replay(learner, ctl.observe(prompt_stats([1]), 1))
    old = learner.batches[-1].old_logp_BT
    assert old[:, 1:3].flatten().tolist() == [-0.25 if code_compat else -0.5] * 4  # learner's vs vLLM's


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
