"""The reward service as a real Ray actor (``RewardClient``) grading a batch in which one answer hangs:
the answer times out, its grading process is killed and replaced, the rest of the batch and the next
batch are graded correctly.

The hanging verifier (tests/unit/helpers_hang.py) is named by dotted path in ``reward.verifier_paths``,
so the actor and its grading processes must be able to import ``tests``. They can because Ray puts
the driver's working directory (the repo root: pytest runs from there) on every worker's sys.path
(job_config ``py_driver_sys_path``), and the forkserver that starts the grading processes inherits
the actor's sys.path; no test code has to live under rlsys/. (The session cluster in conftest.py also
sets PYTHONPATH to the repo root for its workers.)
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from rlsys.config import RewardConfig
from rlsys.types import Prompt, RolloutBatch, Sample, VerifyResult

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

HANG = "tests.unit.helpers_hang:hang_verifier"  # registers "test_hang"; sleeps 60 s on "HANG..."
TIMEOUT_S = 2.0
HANG_S = 60.0  # how long the hanging answer would take if nobody killed its process


def batch(rows: list[tuple[str, str, str, str]], policy_version: int) -> RolloutBatch:
    """One prompt and one sample per (prompt_id, verifier, response, reference) row."""
    prompts = tuple(Prompt(prompt_id=pid, text=f"q {pid}", token_ids=(1, 2), reference=ref, verifier=verifier)
                    for pid, verifier, _, ref in rows)
    samples = tuple(Sample(prompt_id=pid, prompt_token_ids=(1, 2), response_token_ids=(3,), response_logprobs=(-0.5,),
                           response_text=response, finish_reason="stop", temperature=1.0, source="regular",
                           policy_version=policy_version)
                    for pid, _, response, _ in rows)
    return RolloutBatch(prompts=prompts, samples=samples, policy_version=policy_version)


@pytest.fixture()
def reward(ray_cluster):
    from rlsys.orchestration.actors import RewardClient

    if Path.cwd() != REPO:  # see the module docstring: Ray's workers import `tests` via the driver's cwd
        pytest.fail(f"run pytest from the repo root ({REPO}): the reward actor imports {HANG} from there")
    client = RewardClient(RewardConfig(num_workers=2, timeout_s=TIMEOUT_S, num_cpus=0.5, verifier_paths=(HANG,)))
    yield client
    client.shutdown()


def test_hanging_answer_times_out_inside_the_actor_and_its_worker_is_replaced(reward):
    rows = [(f"p{i}", "test_hang", f"r{i}", f"r{i}") for i in range(8)]
    rows[3] = ("p3", "test_hang", "HANG until killed", "r3")
    rows[5] = ("p5", "test_hang", "r5", "something else")  # graded 0.0, not ungradable
    rows += [("a1", "arithmetic", "the answer is 12", "12"), ("a2", "arithmetic", "7", "8"),
             ("d1", HANG, "same", "same")]  # a dotted path works as a prompt's verifier name too
    pids_before = reward.worker_pids()

    start = time.monotonic()
    scored = reward.score(batch(rows, policy_version=4))
    elapsed = time.monotonic() - start

    # One timeout plus grading the rest; generous slack for 2 shared cores, still far below the hang.
    assert elapsed < TIMEOUT_S + 20 < HANG_S
    assert scored.results[3] == VerifyResult(None, None, f"timeout after {TIMEOUT_S:g}s")
    assert [r.score for i, r in enumerate(scored.results) if i != 3] == [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0,
                                                                          1.0, 0.0, 1.0]
    assert scored.timeout_count == 1 and scored.policy_version == 4
    assert scored.grade_seconds <= elapsed
    # Ungradable counts as 0 in the group statistics.
    by_id = {g.prompt_id: g for g in scored.groups}
    assert (by_id["p3"].n, by_id["p3"].n_correct, by_id["p3"].mean) == (1, 0, 0.0)
    assert scored.rewards[3] == 0.0

    # The hung process was killed and replaced; the other one kept running.
    pids_after = reward.worker_pids()
    assert len(pids_after) == 2 and len(set(pids_after) - set(pids_before)) == 1

    # The replacement grades the next batch; nothing of the killed chunk is left over.
    nxt = [(f"n{i}", "test_hang", f"x{i}", f"x{i}") for i in range(6)] + [("m", "arithmetic", "-3", "-3")]
    scored = reward.score(batch(nxt, policy_version=5))
    assert [r.score for r in scored.results] == [1.0] * 7
    assert scored.timeout_count == 0
    assert [g.prompt_id for g in scored.groups] == [pid for pid, *_ in nxt]
