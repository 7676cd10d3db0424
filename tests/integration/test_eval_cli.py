"""``rlsys eval`` as a user runs it: a subprocess on the tiny model with an exported .jsonl dataset and a
built-in task, and the bad-input cases, which must fail with a one-line message, not a traceback.

The subprocess starts its own embedded Ray cluster beside the session's (``ray_cluster``, started
with ``ray.init`` in this process). They do not meet: ``ray.init`` without an address only joins a
cluster named by RAY_ADDRESS (removed from the child's environment here) or one started by
``ray start`` (none is), and each embedded cluster picks its own free ports and session dir.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import integration_config

pytestmark = pytest.mark.integration

RLSYS = Path(sys.executable).parent / "rlsys"  # the console script of this venv
REPORT_LINE = re.compile(r"^(?P<source>\S+): (?P<metrics>eval/\S+=.*)$")


def rlsys(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([str(RLSYS), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def parse_report(stdout: str) -> dict[str, dict[str, float]]:
    """{source: {metric: value}} from the lines ``SOURCE: eval/pass@1=0.1234, ...``."""
    report = {}
    for line in stdout.splitlines():
        m = REPORT_LINE.match(line.strip())
        if m:
            pairs = (item.split("=", 1) for item in m["metrics"].split(", "))
            report[m["source"]] = {k: float(v) for k, v in pairs}
    return report


@pytest.fixture(scope="module")
def model_dir() -> str:
    from rlsys.models.resolve import resolve_model

    return resolve_model(integration_config().model)  # the built-in tiny model, cached under .cache/rlsys


def test_eval_reports_pass_at_1_and_k_per_dataset(model_dir, ray_cluster, tmp_path):
    import ray

    exported = rlsys(["data", "export", "arithmetic", "--n", "12", "--out", "arith.jsonl"], tmp_path, timeout=120)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "wrote 12 rows of arithmetic" in exported.stdout
    rows = [json.loads(line) for line in (tmp_path / "arith.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {"id", "prompt", "reference", "verifier", "difficulty"} <= rows[0].keys()

    # Overrides after the options: the held-out split of the built-in task is 8 prompts.
    start = time.monotonic()
    done = rlsys(["eval", model_dir, "--data", "arith.jsonl", "--data", "builtin:arithmetic", "--k", "4",
                  "--temperature", "1.0", "rollout.num_workers=1", "data.num_eval=8"], tmp_path, timeout=900)
    print(f"rlsys eval took {time.monotonic() - start:.0f}s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = parse_report(done.stdout)
    assert sorted(report) == ["arith.jsonl", "builtin:arithmetic"], done.stdout[-3000:]
    for source, num_prompts in (("arith.jsonl", 12), ("builtin:arithmetic", 8)):
        m = report[source]
        assert 0.0 <= m["eval/pass@1"] <= m["eval/pass@4"] <= 1.0
        assert m["eval/temperature"] == 1.0 and m["eval/num_prompts"] == num_prompts
        # Exported rows carry difficulties 1-3 round-robin, so every level gets an accuracy.
        assert {f"eval/accuracy_difficulty_{d}" for d in (1, 2, 3)} <= m.keys()

    # The session's cluster was neither joined nor disturbed by the child's.
    assert ray.is_initialized()
    assert ray.get(ray.remote(lambda: 41 + 1).remote(), timeout=120) == 42


@pytest.mark.parametrize("case", ["missing", "bad_json"])
def test_eval_bad_data_fails_with_a_message_naming_the_file(model_dir, tmp_path, case):
    data = tmp_path / "data.jsonl"
    good = json.dumps({"prompt": "1+2=", "reference": "3"})
    expected = {"missing": "file not found", "bad_json": "line 2: invalid JSON"}[case]
    if case == "bad_json":  # a missing comma on line 2
        data.write_text(good + '\n{"prompt": "2+2=" "reference": "4"}\n')
    # A built-in source first: every dataset is checked before anything (Ray, vLLM) is started.
    done = rlsys(["eval", model_dir, "--data", "builtin:arithmetic", "--data", str(data), "--k", "2"], tmp_path,
                 timeout=300)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"rlsys eval: {data}: {expected}" in done.stderr
    assert "Traceback" not in done.stderr
    assert "Started a local Ray instance" not in done.stdout + done.stderr
