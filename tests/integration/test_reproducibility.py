"""Same config and seed, same metrics step for step: two runs on the session's shared engines (which
earlier tests have sampled from and trained) log identical values for 5 steps, timings aside.

Request seeds derive from what a request is for (step, pass, prompt index; see
``rlsys.orchestration.stages.SeedScope``), not from an engine's call count or the policy version
number, and the learner starts from the same weights and seed; gloo's all-reduce on CPU sums in a
fixed order for a fixed world size.
"""
from __future__ import annotations

import json

import pytest

from tests.integration.conftest import integration_config, start_run_workers, stop_run_workers

pytestmark = pytest.mark.integration

TIMING = ("perf/", "sync/", "_seconds", "tokens_per_s")


def run(stack, run_dir) -> list[dict]:
    from rlsys.orchestration.driver import run_loop

    cfg = integration_config(f"trainer.run_dir={run_dir}", "trainer.total_steps=5", "trainer.save_every=0",
                             "algo=aer", "entropy_control.aer_alpha_init=0.005")
    w, stream, eval_prompts = start_run_workers(stack, cfg)
    try:
        run_loop(cfg, w, stream, eval_prompts)
    finally:
        stop_run_workers(w)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time" and not any(t in k for t in TIMING)} for r in rows]


def test_two_runs_with_the_same_seed_log_the_same_metrics(stack, tmp_path):
    first, second = run(stack, tmp_path / "a"), run(stack, tmp_path / "b")
    assert [(r["kind"], r["step"]) for r in first] == [("eval", 0)] + [("train", s) for s in range(5)] + [("eval", 5)]
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.keys() == b.keys(), (a["step"], sorted(a.keys() ^ b.keys()))
        different = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
        assert not different, (a["kind"], a["step"], different)
