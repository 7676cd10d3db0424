"""Paths the driver hands to actors on other nodes (docs: README "Run on a cluster"): the run dir every
learner rank writes its checkpoint shard into, and the model dir every rank and engine loads. On one
machine every "node" shares the filesystem, so the happy path is what a run does (``run_loop`` checks
the run dir before its first step); what a rank on a node without the path reports is checked with
paths that do not exist, or hold other text, for the real ranks and engines."""
from __future__ import annotations

import dataclasses
import re

import pytest

from tests.integration.conftest import integration_config

pytestmark = pytest.mark.integration


def test_every_rank_reads_the_run_dir_check_and_names_itself_where_it_cannot(ray_cluster, tmp_path):
    from rlsys.models.resolve import resolve_model
    from rlsys.orchestration import checkpoint
    from rlsys.orchestration.actors import LearnerGroup
    from rlsys.orchestration.driver import loss_spec

    cfg = integration_config()
    learner = LearnerGroup(dataclasses.replace(cfg.learner, num_ranks=2), resolve_model(cfg.model), loss_spec(cfg),
                           cfg.model.dtype)
    try:
        checkpoint.check_run_dir_shared(tmp_path, learner)  # one filesystem: every rank reads the driver's text
        assert list(tmp_path.iterdir()) == []  # the check file is removed again
        (tmp_path / "other").write_text("what this node holds")
        both = re.compile(r"learner-rank-0 \(node [0-9.]+\)\nlearner-rank-1 \(node [0-9.]+\)")
        assert both.fullmatch("\n".join(learner.ranks_not_reading(str(tmp_path / "other"), "what the driver wrote")))
        assert both.fullmatch("\n".join(learner.ranks_not_reading(str(tmp_path / "absent"), "anything")))
        assert learner.ranks_not_reading(str(tmp_path / "other"), "what this node holds") == []
    finally:
        learner.shutdown()


def test_a_model_dir_missing_on_an_actors_node_fails_its_start_naming_actor_node_and_path(ray_cluster, tmp_path):
    from rlsys.orchestration.actors import LearnerGroup, RolloutGroup, WorkerDied
    from rlsys.orchestration.driver import loss_spec

    cfg = integration_config()
    absent = str(tmp_path / "model-on-the-driver-only")
    with pytest.raises(WorkerDied, match=r"learner-rank-0 on node [0-9.]+: the model dir '.*model-on-the-driver-only' "
                                         r"the driver resolved does not exist here"):
        LearnerGroup(dataclasses.replace(cfg.learner, num_ranks=1), absent, loss_spec(cfg), cfg.model.dtype,
                     start_timeout_s=120.0)
    with pytest.raises(WorkerDied, match=r"rollout-0 on node [0-9.]+: the model dir .* does not exist here"):
        RolloutGroup(dataclasses.replace(cfg.rollout, num_workers=1), absent, cfg.model.dtype, 120.0)
