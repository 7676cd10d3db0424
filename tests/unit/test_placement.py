"""Placement and independent scaling, the parts that need no cluster: per-role custom resources and
the learner's placement strategy in the config, the cluster check's arithmetic by resource key, and
how a batch is split over several reward actors and joined back."""
from __future__ import annotations

import pytest

from rlsys.config import ConfigError, load_config
from rlsys.orchestration.actors import join_scored, split_by_prompt
from rlsys.orchestration.cluster import cpus_needed, custom_resources_needed
from rlsys.reward.service import RewardService
from rlsys.types import Prompt, RolloutBatch, Sample
from tests.unit.test_config import CONFIGS

DEMO = str(CONFIGS / "demo.yaml")


def test_roles_take_custom_resources_and_a_placement():
    cfg = load_config(DEMO, ["rollout.resources={rollout_node: 1}", "learner.resources={learner_node: 0.5}",
                             "learner.placement=spread", "reward.num_actors=3", "reward.resources={rollout_node: 0.1}"])
    cfg.validate()
    assert cfg.rollout.resources == {"rollout_node": 1.0} and cfg.learner.placement == "spread"
    need = custom_resources_needed(cfg)
    assert need["rollout_node"][0] == pytest.approx(2 * 1 + 3 * 0.1)
    assert need["rollout_node"][1] == ("rollout.num_workers=2 x rollout.resources.rollout_node=1 + "
                                       "reward.num_actors=3 x reward.resources.rollout_node=0.1")
    assert need["learner_node"] == (1.0, "learner.num_ranks=2 x learner.resources.learner_node=0.5")
    assert cpus_needed(cfg) == pytest.approx(2 * 0.5 + 2 * 0.25 + 3 * 0.25)


@pytest.mark.parametrize("override, message", [
    ("rollout.resources={CPU: 1}", "rollout.resources.CPU: set Ray's own resources with the num_cpus"),
    ("learner.resources={gpu_node: -1}", "learner.resources.gpu_node=-1.0: must be a number > 0"),
    ("learner.placement=colocate", "learner.placement='colocate'"),
    ("reward.num_actors=0", "reward.num_actors=0"),
    ("rollout.weight_transfer=nccl", "rollout.weight_transfer='nccl': not wired"),
])
def test_bad_placement_settings_are_named(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("+", r"\+")):
        load_config(DEMO, [override]).validate()


def test_a_resources_value_that_is_not_a_mapping_is_named():
    with pytest.raises(ConfigError, match=r"rollout.resources='3': expected a mapping"):
        load_config(DEMO, ["rollout.resources=3"])


def batch(pids_per_sample: list[str]) -> RolloutBatch:
    ids = list(dict.fromkeys(pids_per_sample))
    prompts = tuple(Prompt(prompt_id=p, text=p, token_ids=(1,), reference=str(len(p)), verifier="exact_match")
                    for p in ids)
    samples = tuple(Sample(prompt_id=p, prompt_token_ids=(1,), response_token_ids=(2,), response_logprobs=(-1.0,),
                           response_text=str(len(p)) if i % 3 else "wrong", finish_reason="stop", temperature=1.0,
                           source="regular", policy_version=7) for i, p in enumerate(pids_per_sample))
    return RolloutBatch(prompts=prompts, samples=samples, policy_version=7)


@pytest.mark.parametrize("n", [1, 2, 3, 10])
def test_a_batch_split_over_reward_actors_grades_as_one(n):
    rollout = batch(["a", "bb", "a", "ccc", "bb", "dddd", "a", "ccc", "eeeee"])  # interleaved prompts
    with RewardService(num_workers=1, timeout_s=5.0) as service:
        whole = service.score(rollout)
        shards, positions = split_by_prompt(rollout, n)
        assert len(shards) == min(n, 5)
        for part in shards:  # a prompt's samples never straddle two actors
            assert {s.prompt_id for s in part.samples} == {p.prompt_id for p in part.prompts}
        assert sorted(i for where in positions for i in where) == list(range(len(rollout.samples)))
        joined = join_scored(rollout, positions, [service.score(part) for part in shards])
    assert joined.results == whole.results and joined.groups == whole.groups
    assert joined.rollout is rollout and joined.policy_version == 7
    assert joined.timeout_count == whole.timeout_count


def test_an_empty_batch_splits_into_one_empty_share():
    shards, positions = split_by_prompt(RolloutBatch(prompts=(), samples=(), policy_version=0), 4)
    assert len(shards) == 1 and positions == [[]]


def test_roles_take_node_label_selectors_in_rays_syntax():
    cfg = load_config(DEMO, ["rollout.label_selector={role: inference}", "reward.label_selector={zone: 'in(a, b)'}",
                             "learner.label_selector={ray.io/accelerator-type: '!A100'}"])
    cfg.validate()
    assert cfg.rollout.label_selector == {"role": "inference"}
    for bad, named in [("rollout.label_selector={'no spaces': x}", "rollout.label_selector"),
                       ("reward.label_selector={role: 'in(a,'}", "reward.label_selector.role"),
                       ("learner.label_selector={role: ''}", "learner.label_selector.role")]:
        with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
            load_config(DEMO, [bad]).validate()


@pytest.mark.parametrize("selector, labels, expected", [
    ({"role": "inference"}, {"role": "inference"}, True),
    ({"role": "inference"}, {"role": "training"}, False),
    ({"role": "inference"}, {}, False),
    ({"role": "!inference"}, {}, True),
    ({"role": "!inference"}, {"role": "inference"}, False),
    ({"zone": "in(a, b)"}, {"zone": "b"}, True),
    ({"zone": "in(a,b)"}, {"zone": "c"}, False),
    ({"zone": "!in(a,b)"}, {"zone": "c"}, True),
    ({"zone": "!in(a,b)"}, {"zone": "a"}, False),
    ({"role": "inference", "zone": "a"}, {"role": "inference", "zone": "b"}, False),
])
def test_selector_matching_follows_rays_semantics(selector, labels, expected):
    from rlsys.orchestration.cluster import selector_matches

    assert selector_matches(selector, labels) is expected


def test_a_selector_no_node_satisfies_is_named_with_the_labels_nodes_have():
    from rlsys.orchestration.cluster import unmatched_label_selectors

    cfg = load_config(DEMO, ["rollout.label_selector={role: inference}", "learner.label_selector={role: training}"])
    nodes = [{"role": "inference", "ray.io/node-id": "abc"}, {"zone": "a"}]
    assert unmatched_label_selectors(cfg, nodes) == [
        "learner.label_selector={'role': 'training'} (the nodes' labels: role=inference, zone=a)"]
    assert unmatched_label_selectors(load_config(DEMO), nodes) == []
