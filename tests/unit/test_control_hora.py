"""HORA controller: the allocation as the controller makes it, its directives and metrics, the second
pass's requests, and the hora config keys (docs/algorithms.md#hora, #checked-properties 23-25)."""
from __future__ import annotations

from pathlib import Path

import pytest

from rlsys.config import ConfigError, EntropyControlConfig, load_config
from rlsys.control import CONTROLLERS, HORAController, make_controller
from rlsys.metrics.compute import P_BUCKETS, hora_metrics
from rlsys.orchestration.stages import SeedScope, explore_requests
from rlsys.types import AdmitRule, GroupStats, KeepRule, Prompt, PromptBatch
from tests.unit.control_helpers import prompt_stats

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

PROBE_S = [0, 1, 2, 3, 4]  # successes of the 5 prompts in n = 4 probe responses each


def hora(G=8, P=5, temperature=0.9, **kw) -> HORAController:
    cfg = EntropyControlConfig(controller="hora", **kw)
    return make_controller(cfg, samples_per_prompt=G, prompts_per_step=P, regular_temperature=temperature)


def allocate(s_P, **kw) -> list[int]:
    return list(hora(**kw).observe(prompt_stats(s_P, G=4), policy_version=7).extra_samples)


def test_registered_under_its_name():
    assert "hora" in CONTROLLERS
    ctl = hora()
    assert isinstance(ctl, HORAController) and ctl.name == "hora"


@pytest.mark.parametrize("budget", [0, 1, 7, 20, 33])
@pytest.mark.parametrize("utility", ["hit", "unsolved_hit"])
def test_budget_is_spent_exactly(budget, utility):
    alloc = allocate(PROBE_S, hora_budget=budget, hora_utility=utility)
    assert sum(alloc) == budget and all(m >= 0 for m in alloc)


def test_default_budget_matches_grpo_compute():
    # P * (G - n_probe): the probe's P * n_probe plus the extras total the P * G of a GRPO step.
    ctl = hora(G=8, P=5, hora_n_probe=4)
    d = ctl.observe(prompt_stats(PROBE_S, G=4), policy_version=0)
    assert ctl.budget == d.extra_budget == 20 and sum(d.extra_samples) == 20
    assert 5 * 4 + sum(d.extra_samples) == 5 * 8


@pytest.mark.parametrize("cap,budget,used", [(3, 20, 15), (5, 20, 20), (1, 2, 2)])
def test_cap_is_respected(cap, budget, used):
    alloc = allocate(PROBE_S, hora_budget=budget, hora_max_per_prompt=cap)
    assert max(alloc) <= cap and sum(alloc) == used  # short of the budget only when every prompt is capped


def test_unsolved_hit_gives_harder_but_not_hopeless_prompts_more():
    assert allocate(PROBE_S, hora_budget=10) == [2, 3, 2, 2, 1]  # default utility: unsolved_hit
    for budget in range(2, 16):
        alloc = allocate(PROBE_S, hora_budget=budget)
        solved_some = alloc[1:]  # s = 1..4: fewer extra samples the easier the prompt
        assert all(a >= b for a, b in zip(solved_some, solved_some[1:])), (budget, alloc)
        if budget >= 4:
            assert alloc[1] > alloc[4], (budget, alloc)  # 1 of 4 right gets more than 4 of 4
        if budget <= 12:
            assert alloc[1] >= alloc[0], (budget, alloc)  # ... and at least as many as 0 of 4


def test_literal_hit_first_feeds_the_prompts_already_solved():
    # Its first marginal gain is E[p]: one extra sample goes to the 4-of-4 prompt, three to the
    # easiest three, none to the 0-of-4 prompt; unsolved_hit's first one goes to the p = 1/2 prompt.
    assert allocate(PROBE_S, hora_budget=1, hora_utility="hit") == [0, 0, 0, 0, 1]
    assert allocate(PROBE_S, hora_budget=3, hora_utility="hit") == [0, 0, 1, 1, 1]
    assert allocate(PROBE_S, hora_budget=1, hora_utility="unsolved_hit") == [0, 0, 1, 0, 0]


def test_directives_are_typed_and_carry_the_version():
    d = hora(temperature=0.9, hora_budget=6).observe(prompt_stats(PROBE_S, G=4), policy_version=7)
    assert d.policy_version == 7 and d.prompt_ids == tuple(f"q{i}" for i in range(5))
    assert d.extra_joins_group and d.extra_budget == 6
    assert d.temperature == (0.9,) * 5  # the regular pass's temperature: same policy, same sampling
    assert d.entropy_coef == (0.0,) * 5
    assert d.keep_rule_regular == KeepRule("all") and d.replay_admit_rule == AdmitRule("none") and not d.replay_now


def test_second_pass_requests_join_the_group_with_their_n():
    d = hora(hora_budget=10).observe(prompt_stats(PROBE_S, G=4), policy_version=0)
    batch = PromptBatch(prompts=tuple(Prompt(prompt_id=f"q{i}", text="1+1=", token_ids=(1, 2), reference="2")
                                      for i in range(5)), policy_version=0)
    requests = explore_requests(batch, d, SeedScope(0, "explore", 3))
    assert [(r.prompt.prompt_id, r.n) for r in requests] == [(pid, n) for pid, n in zip(d.prompt_ids, d.extra_samples)
                                                              if n > 0]
    assert all(r.source == "regular" for r in requests)  # one group per prompt with its probe samples
    again = explore_requests(batch, d, SeedScope(0, "explore", 3))
    assert [r.seed for r in requests] == [r.seed for r in again]
    assert len({r.seed for r in requests}) == len(requests)


def test_hora_metrics():
    groups = [GroupStats(f"q{i}", 4, s, s / 4, 0.0) for i, s in enumerate(PROBE_S)]
    d = hora(hora_budget=10).observe(prompt_stats(PROBE_S, G=4), policy_version=0)
    m = hora_metrics(d, groups)
    assert m["hora/budget"] == 10 and m["hora/budget_used"] == 10 and m["hora/prompts_allocated"] == 5
    assert m["hora/samples_per_prompt_mean"] == (5 * 4 + 10) / 5
    assert (m["hora/samples_per_prompt_min"], m["hora/samples_per_prompt_max"]) == (5, 7)
    assert [m[f"hora/samples/{b}"] for b in P_BUCKETS] == [6, 7, 6, 6, 5]  # 4 probe + [2, 3, 2, 2, 1]
    assert hora_metrics(make_controller(EntropyControlConfig(), 4, 5).observe(prompt_stats(PROBE_S), 0),
                        groups) == {}


def test_state_dict_names_the_controller():
    ctl = hora()
    ctl.observe(prompt_stats(PROBE_S, G=4), 0)
    assert ctl.state_dict() == {"controller": "hora", "step": 1}


# ---------------------------------------------------------------- config

def hora_problems(*overrides: str) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(None, ["entropy_control.controller=hora", *overrides], configs_dir=str(CONFIGS)).validate()
    return str(e.value)


@pytest.mark.parametrize("override, expected", [
    ("entropy_control.hora_n_probe=1", "entropy_control.hora_n_probe=1: must be >= 2"),
    ("entropy_control.hora_budget=-1", "entropy_control.hora_budget=-1: must be >= 0"),
    ("entropy_control.hora_utility=pass_at_k", "entropy_control.hora_utility='pass_at_k': must be one of"),
    ("entropy_control.hora_max_per_prompt=0", "entropy_control.hora_max_per_prompt=0: must be > 0"),
    ("entropy_control.hora_n_probe=9", "entropy_control.hora_n_probe=9: must be <= rollout.samples_per_prompt=8"),
])
def test_bad_hora_values_are_named_with_their_key(override, expected):
    assert expected in hora_problems(override)


def test_hora_keys_that_validate():
    load_config(None, ["entropy_control.controller=hora", "entropy_control.hora_n_probe=9",
                       "entropy_control.hora_budget=0", "entropy_control.hora_max_per_prompt=null"]).validate()
    cfg = load_config(None, ["algo=hora", "entropy_control.hora_budget=12", "entropy_control.hora_utility=hit"],
                      configs_dir=str(CONFIGS))
    cfg.validate()
    assert (cfg.entropy_control.hora_budget, cfg.entropy_control.hora_utility) == (12, "hit")
    assert cfg.entropy_control.hora_max_per_prompt is None


def test_every_registered_utility_is_accepted():
    from rlsys.algo.hora import HORA_UTILITIES

    for name in HORA_UTILITIES:
        load_config(None, ["algo=hora", f"entropy_control.hora_utility={name}"], configs_dir=str(CONFIGS)).validate()
