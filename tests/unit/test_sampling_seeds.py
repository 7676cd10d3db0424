"""Request seeds: a pure function of the run's rollout seed and what the request is for.

A sample must not depend on how many generate calls an engine served before (tests share engines,
and a resumed run restarts them), nor on which engine serves it.
"""
from __future__ import annotations

from rlsys.orchestration.stages import SeedScope, eval_requests, explore_requests, regular_requests
from rlsys.types import ControlDirectives, Prompt, PromptBatch


def prompts(n: int) -> PromptBatch:
    return PromptBatch(prompts=tuple(Prompt(prompt_id=f"q{i}", text="1+1=", token_ids=(1, 2), reference="2")
                                     for i in range(n)), policy_version=3)


def test_same_scope_same_seeds_and_every_field_of_the_scope_matters():
    scope = SeedScope(base=0, purpose="regular", step=4, round=1)
    seeds = [r.seed for r in regular_requests(prompts(5), 8, 1.0, scope)]
    assert seeds == [r.seed for r in regular_requests(prompts(5), 8, 1.0, SeedScope(0, "regular", 4, 1))]
    assert len(set(seeds)) == 5  # one seed per request
    for other in (SeedScope(1, "regular", 4, 1), SeedScope(0, "eval", 4, 1), SeedScope(0, "regular", 5, 1),
                  SeedScope(0, "regular", 4, 2)):
        assert set(seeds).isdisjoint(r.seed for r in regular_requests(prompts(5), 8, 1.0, other))


def test_seeds_leave_room_for_the_n_children_of_a_request():
    # vLLM seeds the n samples of a request seed, seed+1, ..., seed+n-1: all must stay below 2**31
    scope = SeedScope(base=123456789, purpose="eval", step=10**9)
    assert all(0 <= scope.seed(i) < 2**30 for i in range(10_000))


def test_explore_and_eval_requests_carry_their_own_seeds():
    batch = prompts(3)
    directives = ControlDirectives(prompt_ids=("q0", "q1", "q2"), entropy_coef=(0.0,) * 3,
                                   extra_samples=(0, 4, 4), temperature=(1.0, 1.2, 1.2), policy_version=3)
    explore = explore_requests(batch, directives, SeedScope(0, "explore", 2))
    assert [(r.prompt.prompt_id, r.n, r.temperature, r.source) for r in explore] == [
        ("q1", 4, 1.2, "explore"), ("q2", 4, 1.2, "explore")]
    assert [r.seed for r in explore] == [SeedScope(0, "explore", 2).seed(i) for i in range(2)]
    evals = eval_requests(list(batch.prompts), 4, 1.0, SeedScope(0, "eval", 0))
    assert [r.seed for r in evals] == [SeedScope(0, "eval", 0).seed(i) for i in range(3)]
