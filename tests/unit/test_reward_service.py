"""RewardService: real worker processes, a really hanging verifier (tests/unit/helpers_hang.py loaded
by dotted path in the workers), crash and replacement, ordering, ScoredBatch group statistics, and
verifiers that kill their worker, its forkserver or its process group (tests/unit/helpers_kill.py)."""
import json
import math
import time

import pytest

from rlsys.reward.service import GradeReport, RewardService, group_stats
from rlsys.types import Prompt, RolloutBatch, Sample, VerifyResult

HANG = "tests.unit.helpers_hang:hang_verifier"
KILL = "tests.unit.helpers_kill:kill_verifier"
CODE = "rlsys.reward.code_sandbox:verify_code"
TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def plain():
    with RewardService(num_workers=2, timeout_s=5.0) as svc:
        yield svc


@pytest.fixture(scope="module")
def loaded():
    with RewardService(num_workers=2, timeout_s=TIMEOUT_S, verifier_paths=(HANG, CODE)) as svc:
        yield svc


def test_hanging_answer_times_out_the_rest_is_graded_and_the_worker_is_replaced(loaded):
    requests = [("test_hang", f"r{i}", f"r{i}") for i in range(12)]
    requests[5] = ("test_hang", "HANG forever", "x")
    requests[9] = (HANG, "r9", "other")  # the dotted path works as a verifier name too
    pids_before = loaded.worker_pids()
    replaced_before = loaded.num_replaced
    results, report = loaded.grade(requests)
    assert results[5] == VerifyResult(None, None, "timeout after 1s")
    assert [r.score for i, r in enumerate(results) if i != 5] == [1.0] * 8 + [0.0] + [1.0] * 2
    assert (report.num_graded, report.num_timeouts, report.num_ungradable) == (12, 1, 1)
    assert report.seconds < TIMEOUT_S + 15  # one timeout, generous slack for shared cores
    assert loaded.num_replaced == replaced_before + 1
    assert len(set(loaded.worker_pids()) - set(pids_before)) == 1
    # The replacement grades the next batch; nothing is left over from the killed chunk.
    results, report = loaded.grade([("test_hang", "a", "a"), ("math", r"\boxed{2}", "2")] * 3)
    assert [r.score for r in results] == [1.0] * 6 and report.num_timeouts == 0


def test_two_hangs_in_one_batch(loaded):
    requests = [("test_hang", "HANG", ""), ("test_hang", "a", "a"), ("test_hang", "HANG", ""),
                ("test_hang", "b", "b")]
    results, report = loaded.grade(requests)
    assert [r.score for r in results] == [None, 1.0, None, 1.0]
    assert report.num_timeouts == 2


def test_crashing_and_raising_verifiers_become_ungradable(loaded):
    results, report = loaded.grade([("test_hang", "CRASH", ""), ("test_hang", "a", "a"),
                                    ("test_hang", "RAISE", ""), ("test_hang", "b", "b")])
    assert results[0].score is None and "crashed" in results[0].reason
    assert results[2].score is None and "ValueError: boom" in results[2].reason
    assert [results[1].score, results[3].score] == [1.0, 1.0]
    assert (report.num_timeouts, report.num_ungradable) == (0, 2)


def test_code_verifier_only_where_enabled(plain, loaded):
    tests = "assert add(2, 3) == 5\n"
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    off, _ = plain.grade([("code", good, tests)])
    assert off[0].score is None and "off by default" in off[0].reason
    on, _ = loaded.grade([("code", good, tests), ("code", "def add(a, b): return 0", tests)])
    assert [r.score for r in on] == [1.0, 0.0]


def test_unknown_verifier_is_ungradable(plain):
    results, report = plain.grade([("no_such_verifier", "1", "1")])
    assert results[0].score is None and "unknown verifier" in results[0].reason
    assert report.num_ungradable == 1


def test_many_answers_keep_their_order_across_workers(plain):
    requests = [("arithmetic", f"the answer is {i}", str(i if i % 3 else i + 1)) for i in range(300)]
    results, report = plain.grade(requests)
    assert [r.parsed for r in results] == [str(i) for i in range(300)]
    assert [r.score for r in results] == [0.0 if i % 3 == 0 else 1.0 for i in range(300)]
    assert report == GradeReport(300, 0, 0, report.seconds)


def test_empty_batch(plain):
    results, report = plain.grade([])
    assert results == [] and report.num_graded == 0


def test_bad_verifier_path_fails_at_start_up():
    with pytest.raises(RuntimeError, match="no_such_module"):
        RewardService(num_workers=1, timeout_s=1.0, verifier_paths=("no_such_module:fn",))


def test_failing_startup_check_fails_at_start_up():
    with pytest.raises(RuntimeError, match="cannot be set up here"):
        RewardService(num_workers=1, timeout_s=1.0, verifier_paths=("tests.unit.helpers_kill:unavailable_verifier",))


def test_invalid_arguments():
    with pytest.raises(ValueError):
        RewardService(num_workers=0, timeout_s=1.0)


# ---------------------------------------------------------------- score() and group statistics

def sample(pid: str, text: str) -> Sample:
    return Sample(prompt_id=pid, prompt_token_ids=(1,), response_token_ids=(2,), response_logprobs=(0.0,),
                  response_text=text, finish_reason="stop", temperature=1.0, source="regular", policy_version=7)


def test_score_grades_each_sample_with_its_prompt(plain):
    prompts = (Prompt("p1", "2+2?", (1,), "4", "arithmetic"),
               Prompt("p2", "x?", (1,), json.dumps({"numbers": [2, 3], "target": 6}), "countdown"),
               Prompt("p3", "unused", (1,), "0", "arithmetic"))
    samples = (sample("p2", "2*3"), sample("p1", "4"), sample("p1", "5"), sample("p2", "2+3"), sample("p1", "4"))
    scored = plain.score(RolloutBatch(prompts, samples, policy_version=7))
    assert [r.score for r in scored.results] == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert scored.policy_version == 7 and scored.timeout_count == 0 and scored.grade_seconds > 0
    # Groups in order of first appearance; p3 has no samples and no group.
    # p2: scores [1, 0] -> mean 0.5, population std 0.5. p1: [1, 0, 1] -> mean 2/3,
    # std = sqrt(((1/3)^2 + (2/3)^2 + (1/3)^2) / 3) = sqrt(2/9) = 0.4714.
    p2, p1 = scored.groups
    assert (p2.prompt_id, p2.n, p2.n_correct, p2.mean, p2.std) == ("p2", 2, 1, 0.5, 0.5)
    assert (p1.prompt_id, p1.n, p1.n_correct) == ("p1", 3, 2)
    assert p1.mean == pytest.approx(2 / 3) and p1.std == pytest.approx(math.sqrt(2 / 9))


def test_score_rejects_samples_of_unknown_prompts(plain):
    with pytest.raises(ValueError, match="not in the batch"):
        plain.score(RolloutBatch((), (sample("ghost", "1"),), policy_version=0))


def test_group_stats_counts_ungradable_as_zero_and_threshold_half():
    samples = [sample("a", "")] * 4
    results = [VerifyResult(None, None, "timeout"), VerifyResult(0.5, None, ""), VerifyResult(0.49, None, ""),
               VerifyResult(1.0, None, "")]
    (g,) = group_stats(tuple(samples), results)
    # scores [0, 0.5, 0.49, 1]: correct are 0.5 and 1 (>= 0.5); mean 1.99/4 = 0.4975
    assert (g.n, g.n_correct) == (4, 2)
    assert g.mean == pytest.approx(0.4975)
    slow_std = math.sqrt(sum((x - 0.4975) ** 2 for x in (0, 0.5, 0.49, 1)) / 4)
    assert g.std == pytest.approx(slow_std)


# ---------------------------------------------------------------- answers that kill the grading processes
# Last in this file: killing the forkserver also kills the workers of the module's other services (they
# share it), which those services then replace at their next batch.

@pytest.fixture(scope="module")
def killable():
    with RewardService(num_workers=2, timeout_s=5.0, verifier_paths=(KILL,)) as svc:
        yield svc


@pytest.mark.parametrize("killer", ["KILL_WORKER", "KILL_GROUP", pytest.param("KILL_FORKSERVER", marks=pytest.mark.slow)])
def test_an_answer_that_kills_its_worker_or_forkserver_does_not_disable_grading(killable, killer):
    requests = [("test_kill", f"r{i}", f"r{i}") for i in range(10)]
    requests[4] = ("test_kill", killer, "")
    t0 = time.monotonic()
    results, report = killable.grade(requests)
    # The answers that died with it were graded again (alone) and count; the killer died twice.
    assert [r.score for i, r in enumerate(results) if i != 4] == [1.0] * 9
    assert results[4].score is None and "crashed twice on this answer" in results[4].reason
    assert report.num_ungradable == 1 and report.num_worker_deaths >= 2
    assert time.monotonic() - t0 < 60  # two restarts (a forkserver restart is ~2 s), not a 180 s block
    again, report = killable.grade([("test_kill", "a", "a"), ("test_kill", "b", "c")] * 4)
    assert [r.score for r in again] == [1.0, 0.0] * 4 and report.num_worker_deaths == 0


@pytest.mark.slow
def test_a_forkserver_killed_between_batches_is_noticed_at_the_next(killable, plain):
    results, _ = killable.grade([("test_kill", "KILL_FORKSERVER_LATER", "x"), ("test_kill", "a", "a")])
    assert [r.score for r in results] == [0.0, 1.0]
    time.sleep(1.5)  # the forkserver is gone, and every worker of both services with it
    t0 = time.monotonic()
    results, report = killable.grade([("test_kill", f"r{i}", f"r{i}") for i in range(6)])
    assert [r.score for r in results] == [1.0] * 6 and report.num_ungradable == 0
    results, _ = plain.grade([("arithmetic", "the answer is 4", "4")] * 3)
    assert [r.score for r in results] == [1.0] * 3
    assert time.monotonic() - t0 < 60
