"""UEC-RL controller and replay buffer: docs/algorithms.md#uec_rl and #checked-properties 13-16."""
import math

import pytest
import torch

from rlsys.algo.batch import Trained, TrainRow, assemble, pad_rows, shard
from rlsys.algo.entropy import logp_and_entropy_from_logits
from rlsys.algo.loss import policy_loss
from rlsys.algo.shaping import keep_mask, replay_admit_mask
from rlsys.config import ConfigError, EntropyControlConfig, load_config
from rlsys.control import CONTROLLERS, ReplayBuffer, UECController, make_controller
from rlsys.control.uec import uec_rules
from rlsys.learner.plan import ShardInfo, plan_update
from rlsys.orchestration.batching import BatchStage
from rlsys.orchestration.sampling import ReplayStage
from rlsys.orchestration.stages import SeedScope, explore_requests, prompt_stats as stats_of
from rlsys.reward.service import group_stats
from rlsys.types import (AdmitRule, KeepRule, LearnerStats, Prompt, PromptBatch, RolloutBatch, Sample, ScoredBatch,
                         VerifyResult)
from tests.unit.control_helpers import prompt_stats


def uec(P=2, G=4, temperature=0.9, **kw):
    cfg = EntropyControlConfig(controller="uec_rl", **kw)
    return make_controller(cfg, samples_per_prompt=G, prompts_per_step=P, regular_temperature=temperature)


def uec_with_replay(P=2, G=4, **kw) -> tuple[UECController, ReplayStage]:
    """The controller and the replay stage the driver builds for it (capacity from the class, unit P*G)."""
    cfg = EntropyControlConfig(controller="uec_rl", **kw)
    return (make_controller(cfg, G, P, 0.9),
            ReplayStage(CONTROLLERS["uec_rl"].replay_capacity(cfg, P * G), P * G, seed=0))


def test_property13_extra_samples_iff_all_wrong():
    ctl = uec(uec_extra_samples=20, uec_extra_temperature=1.2)
    d = ctl.observe(prompt_stats([0, 1, 4, 0]), policy_version=3)
    assert d.policy_version == 3
    assert d.extra_samples == (20, 0, 0, 20)
    assert d.temperature == (1.2, 0.9, 0.9, 1.2)
    assert d.entropy_coef == (0.0,) * 4  # no entropy term in UEC-RL's loss


def test_explore_keep_option_and_code_compat_directives():
    assert uec_rules(False, 1.0, "nonnegative") == (KeepRule("nonzero_adv"), KeepRule("nonnegative"),
                                                    AdmitRule("positive_gt", 1.0))
    assert uec_rules(True, 1.0, "positive")[1] == KeepRule("abs_gt", 1.0)
    d = uec(uec_explore_keep="nonnegative").observe(prompt_stats([0, 2]), 0)
    assert d.keep_rule_explore == KeepRule("nonnegative")
    adv_B = torch.tensor([0.0, 0.0, 1.2, -0.8])  # an extra group that found nothing gives A = 0
    assert keep_mask(adv_B, d.keep_rule_explore).tolist() == [True, True, True, False]
    assert keep_mask(adv_B, KeepRule("positive_only")).tolist() == [False, False, True, False]
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


PAPER_RULES = (KeepRule("nonzero_adv"), KeepRule("positive_only"), AdmitRule("positive_gt", 1.0))
CODE_RULES = (KeepRule("abs_gt", 0.05), KeepRule("abs_gt", 1.0), AdmitRule("abs_gt", 1.0))


def test_rules_paper_default_and_code_compat():
    assert uec_rules(False, 1.0) == PAPER_RULES
    assert uec_rules(True, 1.0) == CODE_RULES
    assert uec_rules(False, 0.5)[2] == AdmitRule("positive_gt", 0.5)
    assert uec_rules(True, 1 / 3)[2].threshold == 1 / 3  # the threshold is the config's float, unrounded
    d = uec().observe(prompt_stats([0, 2]), 0)
    assert (d.keep_rule_regular, d.keep_rule_explore, d.replay_admit_rule) == PAPER_RULES
    d = uec(uec_code_compat=True).observe(prompt_stats([0, 2]), 0)
    assert (d.keep_rule_regular, d.keep_rule_explore, d.replay_admit_rule) == CODE_RULES


@pytest.mark.parametrize("code_compat", [False, True])
def test_rules_are_understood_by_algo_shaping(code_compat):
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


def test_replay_capacity_is_the_classs_floor_of_size_times_unit():
    # s' = floor(uec_replay_size * P * G): 2.0 * 8 = 16; 1.3 * 8 = 10.4 -> 10. Other controllers: no replay.
    assert UECController.replay_capacity(EntropyControlConfig(controller="uec_rl", uec_replay_size=2.0), 8) == 16
    assert UECController.replay_capacity(EntropyControlConfig(controller="uec_rl", uec_replay_size=1.3), 8) == 10
    assert all(CONTROLLERS[name].replay_capacity(EntropyControlConfig(controller=name), 8) == 0
               for name in CONTROLLERS if name != "uec_rl")
    assert UECController.uses_batch_buffer(EntropyControlConfig(controller="uec_rl"))
    assert not UECController.uses_batch_buffer(EntropyControlConfig(controller="uec_rl", uec_batch_buffer=False))


# Property 16: P = 3 prompts x G = 4 responses; q0 (1, 0, 0, 0), q1 all wrong (degenerate: A = 0),
# q2 (1, 1, 0, 1). Response lengths 3,1,2,4 | 2,2,5,1 | 1,3,2,2, so over the whole batch N = 28 tokens
# and S = 12 responses; without q1's: N = 10 + 8 = 18, S = 8.
P16_SCORES = ((1, 0, 0, 0), (0, 0, 0, 0), (1, 1, 0, 1))
P16_LENGTHS = ((3, 1, 2, 4), (2, 2, 5, 1), (1, 3, 2, 2))
P16_V = 11


def p16_scored() -> ScoredBatch:
    prompts = tuple(Prompt(f"q{q}", "", (1, 2), "1") for q in range(3))
    samples = tuple(Sample(prompt_id=f"q{q}", prompt_token_ids=(1, 2),
                           response_token_ids=tuple(3 + (q + j + t) % (P16_V - 3) for t in range(n)),
                           response_logprobs=(-0.5,) * n, response_text="", finish_reason="stop", temperature=1.0,
                           source="regular", policy_version=0)
                    for q in range(3) for j, n in enumerate(P16_LENGTHS[q]))
    results = [VerifyResult(score=float(x), parsed=None, reason="") for row in P16_SCORES for x in row]
    return ScoredBatch(rollout=RolloutBatch(prompts, samples, policy_version=0), results=tuple(results),
                       groups=group_stats(samples, results), policy_version=0)


def p16_config(controller: str, loss_agg: str):
    """The uec_rl preset with G' = 0 and no replay (uec_replay_every = 0), trained on what the keep rules
    let through (no batch buffer, which would only delay rows), or the same config under controller none
    (plain GRPO). The reference KL is off: it acts on every kept token, A = 0 ones too."""
    cfg = load_config(None, ["algo=uec_rl", "entropy_control.uec_extra_samples=0", "entropy_control.uec_replay_every=0",
                             "entropy_control.uec_batch_buffer=false", "algo.ref_kl_coef=0", f"algo.loss_agg={loss_agg}",
                             f"entropy_control.controller={controller}", "data.prompts_per_step=3",
                             "rollout.samples_per_prompt=4"])
    cfg.validate()
    return cfg


def p16_trained_batch(cfg, scored: ScoredBatch):
    """The driver's step up to the learner: controller -> (no) exploration pass -> assemble -> batch stage."""
    from rlsys.orchestration.driver import advantage_spec, replay_sizes

    ctl = make_controller(cfg.entropy_control, 4, 3, cfg.rollout.temperature)
    for step in range(11):
        d = ctl.observe(stats_of(scored), 0)
        assert not d.replay_now and d.entropy_coef == (0.0,) * 3
        assert explore_requests(PromptBatch(scored.rollout.prompts, 0), d, SeedScope(0, "explore", step)) == []
    assert replay_sizes(cfg)[0] == (24 if cfg.entropy_control.controller == "uec_rl" else 0)  # held, never replayed
    assembled = assemble(scored, d, advantage_spec(cfg), cfg.learner.old_logprob_source == "rollout")
    return BatchStage.from_config(cfg).take(assembled, 0).batch


def p16_learner_loss(batch, spec, theta_VV, counts=None):
    """The batch's loss as the learner forms it on 2 ranks: round-robin shards, the denominators of
    the learner's plan (plan_update over every rank's ShardInfo) unless ``counts`` = (N, S) is given,
    one policy_loss per rank, summed. Log-probs come from a bigram table ``theta_VV`` shared by all
    rows; old log-probs are shifted per sample (by its index) so ratios leave [0.8, 1.2] on both sides."""
    shards = shard(batch, 2)
    infos = [ShardInfo(tuple(s.sample_index_B.tolist()), tuple(int(n) for n in s.loss_mask_BT.sum(dim=1).tolist()))
             for s in shards]
    total = 0.0
    for rank, s in enumerate(shards):
        (mini,) = plan_update(infos, rank, 1, micro_batch_size=64, chunk_tokens=1024)
        N, S = counts or (mini.num_tokens, mini.num_seqs)
        ids_BT, B = s.input_ids_BT, s.batch_size
        logits_BTV = theta_VV[ids_BT[:, :-1]] / s.temperature_B.double()[:, None, None]
        logp_N, ent_N = logp_and_entropy_from_logits(logits_BTV.reshape(-1, P16_V), ids_BT[:, 1:].reshape(-1))
        logp_BT, ent_BT = logp_N.view(B, -1), ent_N.view(B, -1)
        shift_B = torch.tensor([0.3 * math.sin(i + 1.0) for i in s.sample_index_B.tolist()], dtype=torch.float64)
        loss, _ = policy_loss(logp_BT, logp_BT.detach() + shift_B[:, None], s.adv_B, s.loss_mask_BT, ent_BT,
                              s.entropy_coef_B, spec, N, S)
        total = total + loss
    return total


@pytest.mark.parametrize("loss_agg, full, kept", [("token_mean", 28, 18), ("seq_mean_token_mean", 12, 8),
                                                  ("seq_sum_const", 12, 8)])
def test_property16_no_extra_no_replay_is_grpo_with_a_nonzero_filter(loss_agg, full, kept):
    from rlsys.orchestration.driver import loss_spec

    scored = p16_scored()
    uec_cfg, grpo_cfg = p16_config("uec_rl", loss_agg), p16_config("none", loss_agg)
    uec_batch, grpo_batch = p16_trained_batch(uec_cfg, scored), p16_trained_batch(grpo_cfg, scored)
    spec = loss_spec(uec_cfg)
    assert spec == loss_spec(grpo_cfg) and spec.dual_clip_c == 3.0  # one loss, the preset's
    # the filter: GRPO trains all 12 samples, UEC-RL the 8 with A != 0, with the same advantages
    assert grpo_batch.sample_index_B.tolist() == list(range(12))
    assert uec_batch.sample_index_B.tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    assert bool((grpo_batch.adv_B[4:8] == 0).all()) and bool((grpo_batch.adv_B[[0, 1, 2, 3, 8, 9, 10, 11]] != 0).all())
    assert torch.equal(uec_batch.adv_B, grpo_batch.adv_B[[0, 1, 2, 3, 8, 9, 10, 11]])
    g = torch.Generator().manual_seed(0)
    theta_VV = torch.randn(P16_V, P16_V, generator=g, dtype=torch.float64)

    def loss_and_grad(batch, counts=None):
        theta = theta_VV.clone().requires_grad_(True)
        loss = p16_learner_loss(batch, spec, theta, counts)
        loss.backward()
        return loss.detach(), theta.grad

    grpo_loss, grpo_grad = loss_and_grad(grpo_batch)
    # measured with the full batch's counts, the filter changes neither the loss nor the gradient
    # (A = 0 rows add exactly 0 to both) ...
    same_loss, same_grad = loss_and_grad(uec_batch, counts=(28, 12))
    assert torch.allclose(same_loss, grpo_loss, rtol=1e-12, atol=1e-15)
    assert torch.allclose(same_grad, grpo_grad, rtol=1e-12, atol=1e-15)
    assert grpo_grad.abs().sum() > 0
    # ... but the pipeline renormalises by the kept counts: N = 18 tokens (token_mean) or S = 8 responses,
    # so the step is the GRPO step scaled by full / kept, exactly
    run_loss, run_grad = loss_and_grad(uec_batch)
    assert torch.allclose(run_loss * kept, grpo_loss * full, rtol=1e-12, atol=1e-15)
    assert torch.allclose(run_grad * kept, grpo_grad * full, rtol=1e-12, atol=1e-15)
    assert not torch.allclose(run_loss, grpo_loss)


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


def test_property15_replay_update_only_on_a_due_step_with_enough_samples():
    ctl, replay = uec_with_replay(P=2, G=4, uec_replay_every=2)  # unit P*G = 8, capacity 16
    learner = RecordingLearner(version=0)
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
    ctl, replay = uec_with_replay(P=2, G=4, uec_replay_every=1)
    learner = RecordingLearner(version=5)
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
    ctl, replay = uec_with_replay(P=1, G=2, uec_replay_every=1, uec_code_compat=code_compat)
    learner = RecordingLearner(version=0)
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
