"""Pure metric functions (docs/algorithms.md#metrics) on hand-worked numbers."""
import dataclasses
import math
import random

import numpy as np
import pytest
import torch

from rlsys.metrics import (advantage_metrics, coef_metrics, entropy_metrics, filter_metrics, is_correct, mean_pass_at_k,
                           p_bucket, pass_at_k, reward_metrics, rollout_metrics, sampler_metrics,
                           truncation_metrics)
from rlsys.types import (ControlDirectives, GroupStats, Prompt, RolloutBatch, Sample, ScoredBatch,
                         VerifyResult)


def sample(pid, n_tokens, finish="stop", temperature=1.0, source="regular"):
    return Sample(prompt_id=pid, prompt_token_ids=(1,), response_token_ids=tuple(range(n_tokens)),
                  response_logprobs=(0.0,) * n_tokens, response_text="", finish_reason=finish,
                  temperature=temperature, source=source, policy_version=0)


def scored_batch(rows, groups, source="regular"):
    """rows: (prompt_id, score, n_tokens, finish, temperature)."""
    samples = tuple(sample(pid, n, f, t, source) for pid, _, n, f, t in rows)
    results = tuple(VerifyResult(score=s, parsed=None, reason="") for _, s, _, _, _ in rows)
    prompts = tuple(Prompt(pid, "", (1,), "") for pid in dict.fromkeys(r[0] for r in rows))
    return ScoredBatch(rollout=RolloutBatch(prompts, samples, 0), results=results, groups=tuple(groups),
                       policy_version=0)


def test_p_bucket_edges():
    assert [p_bucket(p) for p in (0, 0.125, 0.25, 0.26, 0.5, 0.51, 0.99, 1.0)] == [
        "p=0", "0<p<=.25", "0<p<=.25", ".25<p<=.5", ".25<p<=.5", ".5<p<1", ".5<p<1", "p=1"]


def test_is_correct_threshold():
    assert [is_correct(x) for x in (None, 0.0, 0.49, 0.5, 1.0)] == [False, False, False, True, True]


def test_reward_metrics_hand_worked():
    # q0: 1 of 4 correct; q1: 0 of 4 (one ungradable); q2: 4 of 4
    rows = ([("q0", 1.0, 2, "stop", 1.0)] + [("q0", 0.0, 2, "stop", 1.0)] * 3
            + [("q1", 0.0, 2, "stop", 1.0)] * 3 + [("q1", None, 2, "stop", 1.0)]
            + [("q2", 1.0, 2, "stop", 1.0)] * 4)
    groups = [GroupStats("q0", 4, 1, 0.25, math.sqrt(3) / 4), GroupStats("q1", 4, 0, 0.0, 0.0),
              GroupStats("q2", 4, 4, 1.0, 0.0)]
    scored = scored_batch(rows, groups)
    explore = scored_batch([("q1", 1.0, 2, "stop", 1.2)] * 2, [], source="explore")
    rollout = dataclasses.replace(scored.rollout, samples=scored.rollout.samples + explore.rollout.samples)
    merged = dataclasses.replace(scored, results=scored.results + explore.results, rollout=rollout)
    m = reward_metrics(merged)  # the two exploration samples (both correct) are not counted
    assert m["reward/mean"] == pytest.approx(5 / 12)
    assert m["reward/accuracy_mean"] == pytest.approx(5 / 12)
    assert m["reward/ungradable_rate"] == pytest.approx(1 / 12)
    assert m["reward/verifier_timeout_rate"] == 0.0
    # the timeout rate is over every graded answer, both passes: 1 timeout / (12 + 2) answers
    timed = reward_metrics(dataclasses.replace(merged, timeout_count=1, grade_seconds=0.5))
    assert timed["reward/verifier_timeout_rate"] == pytest.approx(1 / 14)
    assert timed["reward/grading_seconds"] == 0.5
    assert m["reward/guard_rejected_rate"] == 0.0
    # guard rejections count like timeouts, over every graded answer: 2 flagged of 14 -> 1/7
    flagged = tuple(dataclasses.replace(r, guard_rejected=i in (0, 13)) for i, r in enumerate(merged.results))
    assert reward_metrics(dataclasses.replace(merged, results=flagged))["reward/guard_rejected_rate"] == pytest.approx(1 / 7)
    assert m["reward/frac_all_wrong"] == pytest.approx(1 / 3)
    assert m["reward/frac_all_right"] == pytest.approx(1 / 3)
    assert m["reward/frac_degenerate_groups"] == pytest.approx(2 / 3)  # q1 and q2
    assert {k: v for k, v in m.items() if k.startswith("reward/p_hist/")} == {
        "reward/p_hist/p=0": 1.0, "reward/p_hist/0<p<=.25": 1.0, "reward/p_hist/.25<p<=.5": 0.0,
        "reward/p_hist/.5<p<1": 0.0, "reward/p_hist/p=1": 1.0}


def test_rollout_and_truncation_metrics_hand_worked():
    # lengths 2, 4, 6, 8: mean 5; p90 at index 0.9 * 3 = 2.7 -> 6 + 0.7 * 2 = 7.4
    rows = [("q0", 1.0, 2, "stop", 1.0), ("q0", 0.0, 4, "stop", 1.0), ("q1", 1.0, 6, "length", 1.2),
            ("q1", 0.0, 8, "stop", 1.2)]
    scored = scored_batch(rows, [])
    m = rollout_metrics(scored.rollout)
    assert m == pytest.approx({"rollout/num_samples": 4.0, "rollout/num_explore_samples": 0.0,
                               "rollout/resp_len_mean": 5.0, "rollout/resp_len_p90": 7.4,
                               "rollout/trunc_frac": 0.25, "rollout/temperature_mean": 1.1})
    assert truncation_metrics(scored) == {"rollout/trunc_frac_correct": 0.5}  # 1 of the 2 correct
    assert rollout_metrics(scored) == m | {"rollout/trunc_frac_correct": 0.5}  # ScoredBatch: both
    none_correct = scored_batch([("q0", 0.0, 2, "length", 1.0)], [])
    assert truncation_metrics(none_correct) == {}  # empty set -> omitted, not NaN


def test_advantage_metrics_hand_worked():
    # one GRPO group (ddof 1, 1 of 4 correct) and one degenerate group
    m = advantage_metrics(torch.tensor([1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0]))
    assert m == pytest.approx({"algo/adv_pos_mean": 1.5, "algo/adv_neg_mean": -0.5,
                               "algo/adv_abs_mean": 3.0 / 8, "algo/frac_zero_adv": 0.5})
    assert advantage_metrics([0.0, 0.0]) == {"algo/adv_abs_mean": 0.0, "algo/frac_zero_adv": 1.0}
    assert advantage_metrics(torch.zeros(0)) == {}


def test_entropy_metrics_hand_worked():
    entropy = [1.0, 2.0, 0.5, 1.5, 0.2, 9.9]
    tokens = [2, 4, 2, 2, 5, 0]  # the last sample has no response token: it counts nowhere
    p = [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    correct = [False, False, True, False, True, True]
    ids = ["q0", "q0", "q1", "q1", "q2", "q2"]
    m = entropy_metrics(entropy, tokens, p, correct, ids)
    assert m["entropy/bucket/p=0"] == pytest.approx((1.0 * 2 + 2.0 * 4) / 6)  # 10/6, token-weighted
    assert m["entropy/bucket/.25<p<=.5"] == pytest.approx((0.5 * 2 + 1.5 * 2) / 4)  # 1.0
    assert m["entropy/bucket/p=1"] == pytest.approx(0.2)
    assert "entropy/bucket/0<p<=.25" not in m and "entropy/bucket/.5<p<1" not in m  # empty buckets
    assert m["entropy/bucket_samples/p=0"] == 2 and m["entropy/bucket_samples/.5<p<1"] == 0
    assert m["entropy/bucket_prompts/p=1"] == 1 and m["entropy/bucket_prompts/0<p<=.25"] == 0
    assert m["entropy/pos_rollouts"] == pytest.approx((0.5 * 2 + 0.2 * 5) / 7)  # 2/7
    assert m["entropy/neg_rollouts"] == pytest.approx((2 + 8 + 3) / 8)  # 13/8
    # per-sample means of samples with tokens: [1.0, 2.0, 0.5, 1.5, 0.2] -> mean 1.04
    # sorted [0.2, 0.5, 1.0, 1.5, 2.0]: p10 at index 0.4 -> 0.32, p90 at index 3.6 -> 1.8
    assert m["entropy/seq_mean"] == pytest.approx(1.04)
    assert m["entropy/p10"] == pytest.approx(0.32)
    assert m["entropy/p90"] == pytest.approx(1.8)
    assert not any(math.isnan(v) for v in m.values())
    without_ids = entropy_metrics(entropy, tokens, p, correct)
    assert not any(k.startswith("entropy/bucket_prompts/") for k in without_ids)


def test_entropy_metrics_match_slow_loop():
    rng = random.Random(0)
    B = 40
    e = [rng.uniform(0, 3) for _ in range(B)]
    n = [rng.randint(0, 9) for _ in range(B)]
    p = [rng.choice([0, 0.25, 0.5, 0.75, 1.0]) for _ in range(B)]
    c = [rng.random() < 0.5 for _ in range(B)]
    m = entropy_metrics(e, n, p, c)
    for bucket in ("p=0", "0<p<=.25", ".25<p<=.5", ".5<p<1", "p=1"):
        num = den = 0.0
        for i in range(B):
            if p_bucket(p[i]) == bucket:
                num += e[i] * n[i]
                den += n[i]
        if den:
            assert m[f"entropy/bucket/{bucket}"] == pytest.approx(num / den)
    num = sum(e[i] * n[i] for i in range(B) if c[i])
    assert m["entropy/pos_rollouts"] == pytest.approx(num / sum(n[i] for i in range(B) if c[i]))
    assert m["entropy/seq_mean"] == pytest.approx(np.mean([e[i] for i in range(B) if n[i] > 0]))


def test_coef_metrics_hand_worked():
    d = ControlDirectives(policy_version=0, prompt_ids=("a", "b", "c", "d"),
                          entropy_coef=(0.0, 0.002, 0.004, 0.0),
                          globals={"coef_global": 0.004, "entropy_initial": 1.0, "entropy_target": 0.4,
                                   "entropy_error": -0.1})
    assert coef_metrics(d) == pytest.approx({
        "entropy/coef_mean": 0.0015, "entropy/coef_max": 0.004, "entropy/coef_nonzero_frac": 0.5,
        "entropy/coef_global": 0.004, "entropy/initial": 1.0, "entropy/target": 0.4, "entropy/error": -0.1})
    assert coef_metrics(ControlDirectives(0, (), ())) == {}


def test_sampler_metrics_hand_worked():
    d = ControlDirectives(policy_version=0, prompt_ids=("q0", "q1", "q2"), entropy_coef=(0.0,) * 3,
                          extra_samples=(20, 0, 20), temperature=(1.2, 1.0, 1.2))
    explore = scored_batch([("q0", 0.0, 2, "stop", 1.2), ("q0", 1.0, 2, "stop", 1.2),
                            ("q2", 0.0, 2, "stop", 1.2), ("q2", None, 2, "stop", 1.2)], [], source="explore")
    assert sampler_metrics(d, explore) == {"sampler/hard_prompts": 2.0, "sampler/extra_samples": 40.0,
                                           "sampler/extra_hit_rate": 0.5}  # q0 hit, q2 not
    assert "sampler/extra_hit_rate" not in sampler_metrics(d)


def test_pass_at_k_hand_worked():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)  # c/n
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(4, 3, 2) == 1.0  # only one wrong sample: every pair has a correct one
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 1, 10) == 1.0
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    exact = 1 - math.comb(190, 100) / math.comb(200, 100)  # large n: product form agrees
    assert pass_at_k(200, 10, 100) == pytest.approx(exact, rel=1e-12)
    assert mean_pass_at_k([0, 2, 5], n=5, k=1) == pytest.approx((0 + 0.4 + 1.0) / 3)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_filter_metrics_split_by_pass():
    # 3 regular samples (2 kept) and 2 exploration samples (1 kept)
    samples = [sample("q0", 2), sample("q0", 2), sample("q1", 2), sample("q1", 2, source="explore"),
               sample("q1", 2, source="explore")]
    m = filter_metrics(samples, torch.tensor([True, False, True, True, False]))
    assert m == {"filter/kept_samples": 3.0, "filter/total_samples": 5.0, "filter/kept_regular": 2.0,
                 "filter/kept_explore": 1.0}
