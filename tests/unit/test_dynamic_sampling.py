"""DAPO dynamic sampling as it runs (docs/algorithms.md#dapo, #checked-properties 19): the loop of
``RegularSampler.sample``, the sampler the driver uses, over a real ``PromptStream``. Only the rollout
boundary is a stand-in: a rollout group that answers request i with n numbered responses, and a reward
group that grades the first k of them correct, k being what the prompt's reference says, with the
reward service's own ``group_stats``. (The real engines and grader: tests/integration/test_dynamic_sampling.py.)
"""
from __future__ import annotations

import random

import pytest

from rlsys.config import RolloutConfig
from rlsys.data.prompt_stream import PromptStream
from rlsys.models.tokenizer import build_char_tokenizer
from rlsys.orchestration.sampling import RegularSampler
from rlsys.orchestration.stages import SeedScope
from rlsys.reward.service import group_stats
from rlsys.types import RolloutBatch, Sample, SamplingRequest, ScoredBatch, VerifyResult

G = 4
TOKENIZER = build_char_tokenizer()


class NumberedRollout:
    """Stands in for the rollout group: ``generate`` answers each request with ``n`` responses "0".."n-1"
    and records the requests it was sent."""

    def __init__(self):
        self.calls: list[list[SamplingRequest]] = []

    def generate(self, requests: list[SamplingRequest], policy_version: int) -> RolloutBatch:
        self.calls.append(list(requests))
        samples = tuple(Sample(prompt_id=r.prompt.prompt_id, prompt_token_ids=r.prompt.token_ids,
                               response_token_ids=(5,), response_logprobs=(-1.0,), response_text=str(j),
                               finish_reason="stop", temperature=r.temperature, source=r.source,
                               policy_version=policy_version)
                        for r in requests for j in range(r.n))
        return RolloutBatch(prompts=tuple(r.prompt for r in requests), samples=samples, policy_version=policy_version)


class FirstKCorrect:
    """Stands in for the reward group: response j of a prompt scores 1 iff j < int(reference)."""

    def score(self, rollout: RolloutBatch) -> ScoredBatch:
        k = {p.prompt_id: int(p.reference) for p in rollout.prompts}
        results = [VerifyResult(score=float(int(s.response_text) < k[s.prompt_id]), parsed=s.response_text, reason="")
                   for s in rollout.samples]
        return ScoredBatch(rollout=rollout, results=tuple(results), groups=group_stats(rollout.samples, results),
                           policy_version=rollout.policy_version)


def stream_drawing(ks: list[int], P: int, seed: int = 0) -> tuple[PromptStream, list[str]]:
    """A real PromptStream (len(ks) rows, one epoch) whose i-th drawn prompt has ``ks[i]`` correct answers
    of G, and the ids in draw order. The epoch's order depends only on the seed and the row ids, so a
    twin stream over the same ids tells which row is drawn i-th."""
    ids = [f"q{i}" for i in range(len(ks))]

    def rows(k_of: dict[str, int]) -> list[dict]:
        return [{"id": i, "prompt": "1+1=", "reference": str(k_of.get(i, 0))} for i in ids]

    twin = PromptStream(rows({}), TOKENIZER, P, seed=seed)
    order = [p.prompt_id for _ in range(len(ks) // P) for p in twin.next_batch().prompts]
    return PromptStream(rows(dict(zip(order, ks))), TOKENIZER, P, seed=seed), order


def sampler(stream: PromptStream, dynamic: bool, max_rounds: int, rollout=None) -> RegularSampler:
    cfg = RolloutConfig(samples_per_prompt=G, temperature=0.7, seed=11)
    return RegularSampler(stream, rollout or NumberedRollout(), FirstKCorrect(), cfg, (dynamic, max_rounds))


def test_property19_hand_worked_refill():
    # P = 3, G = 4; k correct of each drawn prompt, in draw order, one round of 3 per line:
    #   round 1: 0 2 4 -> keeps #1 (2/4), drops 2 degenerate
    #   round 2: 1 0 4 -> keeps #3 (1/4), drops 2
    #   round 3: 3 2 0 -> #6 (3/4) fills the batch; #7 (2/4) is informative but surplus; drops 1
    ks = [0, 2, 4, 1, 0, 4, 3, 2, 0]
    stream, order = stream_drawing(ks, P=3)
    rollout = NumberedRollout()
    prompts, kept, info = sampler(stream, True, 4, rollout).sample(policy_version=5, step=2)
    assert [g.prompt_id for g in kept.groups] == [order[1], order[3], order[6]]
    assert [(g.n, g.n_correct) for g in kept.groups] == [(4, 2), (4, 1), (4, 3)]
    assert info == {"sampler/dynamic_rounds": 3.0, "sampler/dynamic_dropped_groups": 5.0,
                    "sampler/dynamic_exhausted": 0.0}
    assert [p.prompt_id for p in prompts.prompts] == [g.prompt_id for g in kept.groups] and prompts.policy_version == 5
    # the samples and their grades are exactly the kept groups', G each, in group order
    assert [s.prompt_id for s in kept.rollout.samples] == [pid for pid in (order[1], order[3], order[6]) for _ in range(G)]
    assert [r.score for r in kept.results] == [1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0]
    # round r's requests draw from the seeds of (regular, step 2, round r): a refill never repeats samples
    assert [[r.seed for r in call] for call in rollout.calls] == [
        [SeedScope(11, "regular", 2, rnd).seed(i) for i in range(3)] for rnd in (1, 2, 3)]
    assert all(r.n == G and r.temperature == 0.7 and r.source == "regular" for call in rollout.calls for r in call)
    assert stream.state_dict()["position"] == 9  # three rounds of P = 3 prompts were drawn


def test_property19_reports_exhaustion_with_what_it_has():
    stream, order = stream_drawing([0, 2, 4, 1, 0, 4, 3, 2, 0], P=3)
    _, kept, info = sampler(stream, True, 2).sample(policy_version=0, step=0)
    assert [g.prompt_id for g in kept.groups] == [order[1], order[3]]
    assert info == {"sampler/dynamic_rounds": 2.0, "sampler/dynamic_dropped_groups": 4.0,
                    "sampler/dynamic_exhausted": 1.0}
    stream, _ = stream_drawing([0, 4, 0, 4, 4, 0], P=3)  # nothing informative at all: an empty batch
    prompts, kept, info = sampler(stream, True, 2).sample(policy_version=0, step=0)
    assert kept.groups == () and kept.rollout.samples == () and prompts.prompts == ()
    assert info["sampler/dynamic_exhausted"] == 1.0 and info["sampler/dynamic_dropped_groups"] == 6.0


def test_without_dynamic_sampling_the_first_round_is_the_batch():
    stream, order = stream_drawing([0, 2, 4, 1, 0, 4], P=3)
    prompts, scored, info = sampler(stream, False, 4).sample(policy_version=0, step=0)
    assert info == {} and [g.prompt_id for g in scored.groups] == order[:3]  # degenerate groups included
    assert [p.prompt_id for p in prompts.prompts] == order[:3] and stream.state_dict()["position"] == 3


@pytest.mark.parametrize("seed", range(40))
def test_property19_random_streams_never_emit_a_degenerate_group(seed):
    # Against a slow reference: the kept groups are the first informative ones in draw order, round by
    # round, until P are in hand (the rest of that round dropped) or max_rounds rounds were drawn.
    rng = random.Random(seed)
    P, max_rounds = rng.randint(1, 5), rng.randint(1, 5)
    ks = [rng.choice([0, 0, 1, 2, 3, 4, 4]) for _ in range(P * max_rounds)]
    stream, order = stream_drawing(ks, P, seed=seed)
    _, kept, info = sampler(stream, True, max_rounds).sample(policy_version=0, step=seed)
    want, rounds, dropped = [], 0, 0
    for rnd in range(max_rounds):
        if len(want) == P:
            break
        rounds += 1
        drawn = range(rnd * P, (rnd + 1) * P)
        dropped += sum(ks[i] in (0, G) for i in drawn)
        want += [order[i] for i in drawn if 0 < ks[i] < G][:P - len(want)]
    assert [g.prompt_id for g in kept.groups] == want
    assert all(0 < g.n_correct < g.n == G for g in kept.groups)  # never a group with p in {0, 1}
    assert info["sampler/dynamic_rounds"] == rounds and info["sampler/dynamic_dropped_groups"] == dropped
    # the batch is full, or the sampler says it ran out (after all its rounds)
    assert (len(kept.groups) == P and info["sampler/dynamic_exhausted"] == 0.0) or (
        len(kept.groups) < P and info["sampler/dynamic_exhausted"] == 1.0 and rounds == max_rounds)
    assert len(kept.rollout.samples) == len(kept.results) == G * len(kept.groups)
    assert {s.prompt_id for s in kept.rollout.samples} == set(want)
