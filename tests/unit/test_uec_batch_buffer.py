"""UEC-RL's batch buffer (docs/algorithms.md#uec_rl, step 5) and the batch stage around it: FIFO
order, training only on whole multiples of P*G, nothing lost across steps, overflow counted, exact
resume; plus the code-compat scoring rules of batch assembly."""
import pytest
import torch

from rlsys.algo.batch import AdvantageSpec, TrainRow, assemble, pad_rows
from rlsys.algo.batch_buffer import BatchBuffer
from rlsys.config import load_config
from rlsys.orchestration.batching import BatchStage
from rlsys.types import (ControlDirectives, GroupStats, KeepRule, Prompt, RolloutBatch, Sample, ScoredBatch,
                         VerifyResult)


def sample(pid="a", resp=(7,), source="regular", temperature=1.0, version=3, finish="stop"):
    return Sample(prompt_id=pid, prompt_token_ids=(1, 2), response_token_ids=resp,
                  response_logprobs=tuple(-0.5 for _ in resp), response_text="", finish_reason=finish,
                  temperature=temperature, source=source, policy_version=version)


def row(tag: int, version: int = 3) -> TrainRow:
    return TrainRow(sample=sample(pid=f"q{tag}", version=version), adv=float(tag), coef=0.0, temperature=1.0,
                    reward=1.0, group_accuracy=0.5)


def scored_of(samples, scores, n_correct=None):
    pids = list(dict.fromkeys(s.prompt_id for s in samples))
    n_correct = n_correct or {}
    return ScoredBatch(
        rollout=RolloutBatch(prompts=tuple(Prompt(prompt_id=p, text="", token_ids=(1, 2), reference="0") for p in pids),
                             samples=tuple(samples), policy_version=3),
        results=tuple(VerifyResult(score=x, parsed=None, reason="") for x in scores),
        groups=tuple(GroupStats(prompt_id=p, n=4, n_correct=n_correct.get(p, 0), mean=0, std=0) for p in pids),
        policy_version=3)


# ------------------------------------------------------------------ BatchBuffer


def test_pops_only_whole_multiples_of_the_unit_in_fifo_order():
    buf = BatchBuffer(capacity=8, unit=4)
    assert buf.add(range(3)) == 0 and buf.pop_trainable() == [] and len(buf) == 3  # < P*G: nothing trained
    buf.add(range(3, 9))  # 9 held... over capacity 8: the oldest (0) is dropped
    assert buf.dropped_total == 1
    assert buf.pop_trainable() == [1, 2, 3, 4, 5, 6, 7, 8]  # the largest multiple (8), oldest first
    assert len(buf) == 0


def test_nothing_is_lost_across_steps_without_overflow():
    buf, trained, added = BatchBuffer(capacity=10, unit=5), [], []
    nxt = 0
    for k in (3, 4, 2, 6, 1, 4):  # kept samples per step, never more than capacity in the buffer
        items = list(range(nxt, nxt + k))
        nxt += k
        added += items
        assert buf.add(items) == 0
        popped = buf.pop_trainable()
        assert len(popped) % 5 == 0
        trained += popped
        assert len(buf) < 5  # what waits is less than one unit
    assert buf.dropped_total == 0
    waiting = buf.pop_trainable() + list(buf._items)
    assert trained + waiting == added  # every sample trained once, in order, or still waiting


def test_overflow_drops_the_oldest_and_counts_them():
    buf = BatchBuffer(capacity=6, unit=4)
    buf.add([0, 1, 2])
    assert buf.pop_trainable() == []
    assert buf.add(range(3, 10)) == 4  # 10 held > 6: 0..3 dropped
    assert buf.dropped_total == 4
    assert buf.pop_trainable() == [4, 5, 6, 7] and list(buf._items) == [8, 9]


def test_state_dict_round_trip_resumes_exactly():
    a = BatchBuffer(capacity=8, unit=4)
    a.add(range(11))
    a.pop_trainable()
    a.add([100])
    b = BatchBuffer(capacity=8, unit=4)
    b.load_state_dict(a.state_dict())
    assert len(b) == len(a) and b.dropped_total == a.dropped_total == 3
    for extra in ([101, 102], [103, 104, 105]):
        assert a.add(extra) == b.add(extra)
        assert a.pop_trainable() == b.pop_trainable()
    with pytest.raises(ValueError, match="capacity"):
        BatchBuffer(capacity=16, unit=8).load_state_dict(a.state_dict())


def test_capacity_must_hold_one_unit():
    with pytest.raises(ValueError, match="unit"):
        BatchBuffer(capacity=3, unit=4)
    with pytest.raises(ValueError, match="unit"):
        BatchBuffer(capacity=3, unit=0)


# ------------------------------------------------------------------ BatchStage


def assembled_with_rows(rows):
    from rlsys.algo.batch import Assembled

    return Assembled(batch=pad_rows(rows, range(len(rows)), 3, False), rewards_B=torch.zeros(len(rows)),
                     adv_B=torch.zeros(len(rows)), kept_B=torch.ones(len(rows), dtype=torch.bool), rows=tuple(rows))


def test_stage_trains_multiples_of_p_times_g_and_logs_the_buffer():
    stage, d = BatchStage(BatchBuffer(capacity=8, unit=4), use_rollout_logprobs=False), ControlDirectives(0, (), ())
    first = assembled_with_rows([row(i, version=3) for i in range(3)])
    t = stage.take(first, policy_version=3)
    assert t.batch.batch_size == 0 and t.rows == ()
    m = stage.metrics(first, t, d)
    assert (m["uec/batch_buffer_size"], m["uec/batch_buffer_trained"], m["uec/batch_buffer_dropped"]) == (3, 0, 0)
    assert "uec/batch_buffer_staleness_steps" not in m
    second = assembled_with_rows([row(i, version=4) for i in range(3, 9)])  # 9 > capacity 8: row 0 dropped
    t = stage.take(second, policy_version=4)
    assert [r.adv for r in t.rows] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert t.batch.sample_index_B.tolist() == list(range(8)) and t.batch.old_logp_BT is None
    assert t.batch.adv_B.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    m = stage.metrics(second, t, d)
    assert (m["uec/batch_buffer_size"], m["uec/batch_buffer_trained"], m["uec/batch_buffer_dropped"]) == (0, 8, 1)
    assert m["uec/batch_buffer_dropped_total"] == 1
    assert m["uec/batch_buffer_staleness_steps"] == pytest.approx((2 * 1 + 6 * 0) / 8)  # rows 1, 2 from version 3


def test_stage_with_rollout_logprobs_keeps_the_sampling_time_logprobs():
    stage = BatchStage(BatchBuffer(capacity=4, unit=2), use_rollout_logprobs=True)
    t = stage.take(assembled_with_rows([row(1), row(2)]), policy_version=5)
    assert t.batch.old_logp_BT is not None and t.batch.old_logp_BT[0, 1].item() == -0.5


def test_stage_without_buffer_passes_the_assembled_batch_through():
    stage = BatchStage(None, use_rollout_logprobs=False)
    a = assembled_with_rows([row(1), row(2), row(3)])
    t = stage.take(a, policy_version=3)
    assert t.batch is a.batch and t.rows == a.rows
    assert stage.metrics(a, t, ControlDirectives(0, (), ())) == {} and stage.state_dict() == {}


def test_stage_state_round_trip_and_switch_mismatch():
    a = BatchStage(BatchBuffer(capacity=8, unit=4), False)
    a.take(assembled_with_rows([row(i) for i in range(3)]), 3)
    b = BatchStage(BatchBuffer(capacity=8, unit=4), False)
    b.load_state_dict(a.state_dict())
    more = assembled_with_rows([row(i) for i in range(3, 5)])
    assert a.take(more, 4).rows == b.take(more, 4).rows
    with pytest.raises(ValueError, match="uec_batch_buffer"):
        BatchStage(None, False).load_state_dict(a.state_dict())


@pytest.mark.parametrize("overrides, capacity", [
    (["algo=uec_rl"], 2 * 4 * 8),
    (["algo=uec_rl", "entropy_control.uec_batch_buffer=false"], None),
    (["algo=grpo", "entropy_control.uec_batch_buffer=true"], None),  # only UEC-RL has one
])
def test_stage_from_config(overrides, capacity):
    cfg = load_config(None, ["data.prompts_per_step=4", "rollout.samples_per_prompt=8", *overrides])
    stage = BatchStage.from_config(cfg)
    assert (None if stage.buffer is None else stage.buffer.capacity) == capacity
    if stage.buffer is not None:
        assert stage.buffer.unit == 32


# ------------------------------------------------------------------ code-compat assembly


def test_overlong_positive_filter_drops_truncated_samples_with_positive_advantage():
    # One group, (1, 1, 0, 0): A = (+, +, -, -); sample 0 and 2 are truncated.
    s = [sample(resp=(7, 8), finish="length"), sample(), sample(finish="length"), sample()]
    base = dict(policy_version=3, prompt_ids=("a",), entropy_coef=(0.0,), keep_rule_regular=KeepRule("nonzero_adv"))
    scored = scored_of(s, [1, 1, 0, 0])
    plain = assemble(scored, ControlDirectives(**base), AdvantageSpec())
    assert plain.kept_B.tolist() == [True] * 4 and plain.dropped_overlong_positive == 0
    compat = assemble(scored, ControlDirectives(**base, drop_overlong_positive=True), AdvantageSpec())
    assert compat.kept_B.tolist() == [False, True, True, True]  # the truncated wrong one stays
    assert compat.dropped_overlong_positive == 1 and compat.batch.sample_index_B.tolist() == [1, 2, 3]
    stage = BatchStage(None, False)
    assert stage.metrics(compat, stage.take(compat, 3), ControlDirectives(**base, drop_overlong_positive=True)) == {
        "filter/dropped_overlong_positive": 1.0}


def test_exploration_samples_scored_at_the_named_temperature():
    s = [sample(), sample()] + [sample(source="explore", temperature=1.2) for _ in range(2)]
    base = dict(policy_version=3, prompt_ids=("a",), entropy_coef=(0.0,))
    scored = scored_of(s, [0, 1, 1, 0])
    drawn = assemble(scored, ControlDirectives(**base), AdvantageSpec())
    assert drawn.batch.temperature_B.tolist() == pytest.approx([1.0, 1.0, 1.2, 1.2])
    compat = assemble(scored, ControlDirectives(**base, explore_score_temperature=0.9), AdvantageSpec())
    assert compat.batch.temperature_B.tolist() == pytest.approx([1.0, 1.0, 0.9, 0.9])
    assert [r.temperature for r in compat.rows] == pytest.approx([1.0, 1.0, 0.9, 0.9])


def test_rows_carry_what_metrics_and_replay_need():
    s = [sample(pid="a"), sample(pid="a"), sample(pid="b")]
    d = ControlDirectives(policy_version=3, prompt_ids=("a", "b"), entropy_coef=(0.01, 0.02))
    out = assemble(scored_of(s, [1, 0, 0], n_correct={"a": 1}), d, AdvantageSpec())
    assert [r.sample for r in out.rows] == s
    assert [r.reward for r in out.rows] == [1.0, 0.0, 0.0]
    assert [r.group_accuracy for r in out.rows] == [0.25, 0.25, 0.0]
    assert [r.coef for r in out.rows] == [0.01, 0.01, 0.02]
    assert [r.adv for r in out.rows] == pytest.approx(out.adv_B.tolist())


def test_pad_rows_uses_stored_old_logprobs_and_checks_them():
    stored = TrainRow(sample=sample(resp=(7, 8)), adv=1.0, coef=0.0, temperature=1.0, reward=1.0,
                      group_accuracy=0.5, old_logp=(-0.1, -0.2))
    b = pad_rows([stored, row(1)], [0, 1], 3, use_rollout_logprobs=True)
    assert b.old_logp_BT[0, 1:3].tolist() == pytest.approx([-0.1, -0.2])  # the learner's, not vLLM's -0.5
    assert b.old_logp_BT[1, 1].item() == -0.5
    assert pad_rows([stored], [0], 3, use_rollout_logprobs=False).old_logp_BT is not None
    with pytest.raises(ValueError, match="stored old log-probs"):
        pad_rows([stored, row(1)], [0, 1], 3, use_rollout_logprobs=False)
    with pytest.raises(ValueError, match="1 old log-probs for 2"):
        pad_rows([TrainRow(sample=sample(resp=(7, 8)), adv=1.0, coef=0.0, temperature=1.0, reward=1.0,
                           group_accuracy=0.5, old_logp=(-0.1,))], [0], 3, use_rollout_logprobs=True)
