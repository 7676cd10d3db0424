"""An actor request the cluster cannot host fails within ``cluster.actor_start_timeout_s``, naming the
actors and what the cluster has free (the session's Ray cluster, no engines). Without the bound the
constructor would wait forever for resources that never come."""
from __future__ import annotations

import dataclasses

import pytest

from tests.integration.conftest import integration_config

pytestmark = pytest.mark.integration


def test_unplaceable_learner_ranks_fail_within_the_start_timeout(ray_cluster):
    from rlsys.orchestration.actors import LearnerGroup, WorkerDied
    from rlsys.orchestration.driver import loss_spec

    cfg = integration_config()
    learner_cfg = dataclasses.replace(cfg.learner, num_ranks=2, num_cpus_per_rank=100.0)  # the cluster has 8
    with pytest.raises(WorkerDied, match=r"learner-rank-0, learner-rank-1 not started within 3 s "
                                         r"\(cluster.actor_start_timeout_s\); resources free .*CPU="):
        LearnerGroup(learner_cfg, "unused-model-path", loss_spec(cfg), cfg.model.dtype, start_timeout_s=3.0)


def test_a_label_selector_no_node_has_fails_within_the_start_timeout(ray_cluster):
    """The selector reaches Ray (actor label_selector for the reward actor, bundle_label_selector of
    the ranks' placement group): nothing in the session's cluster is labelled so, nothing starts."""
    from rlsys.orchestration.actors import LearnerGroup, RewardClient, WorkerDied
    from rlsys.orchestration.driver import loss_spec

    cfg = integration_config("reward.label_selector={rlsys-test: nowhere}", "learner.label_selector={rlsys-test: nowhere}")
    with pytest.raises(WorkerDied, match=r"reward-0 not started within 3 s"):
        RewardClient(cfg.reward, 3.0)
    with pytest.raises(WorkerDied, match=r"learner-rank-0, learner-rank-1 not started within 3 s"):
        LearnerGroup(cfg.learner, "unused-model-path", loss_spec(cfg), cfg.model.dtype, start_timeout_s=3.0)
