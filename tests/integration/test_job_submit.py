"""`ray job submit --working-dir . -- rlsys train ...` against a running cluster with Ray's token
authentication left on, as the README shows it (deploy/start_local_cluster.sh does the same start).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.integration.ports import PortBlock, ray_start_port_args

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(cmd, env, timeout=600, check=True):
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd[:3]} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture()
def head(tmp_path):
    env = os.environ | {"PATH": f"{BIN}:{os.environ['PATH']}", "DS_ACCELERATOR": "cpu",
                        "VLLM_CPU_KVCACHE_SPACE": "1", "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    ports = PortBlock()  # held until the test ends: no other test or cluster gets these
    gcs, dash = ports.port(0), ports.port(1)
    temp_dir = tempfile.mkdtemp(prefix="rlsys-ray-")  # short: Ray's unix socket paths are limited to 107 bytes
    run([str(BIN / "ray"), "get-auth-token", "--generate"], env)
    ports.release()
    try:
        run([str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
             "--num-cpus", "4", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
             "--ray-client-server-port", str(ports.port(2)), *ray_start_port_args(ports),
             "--disable-usage-stats", "--temp-dir", temp_dir], env, timeout=180)
    except BaseException:
        stop_cluster(temp_dir)
        ports.close()
        raise
    try:
        yield env, f"http://127.0.0.1:{dash}"
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        ports.close()


def stop_cluster(temp_dir: str) -> None:
    """Stop only this test's cluster: `ray stop` would also kill the session's embedded cluster."""
    import psutil

    procs = [p for p in psutil.process_iter(["cmdline"]) if temp_dir in " ".join(p.info["cmdline"] or [])]
    family = {c for p in procs for c in p.children(recursive=True)} | set(procs)
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(list(family), timeout=30)


def test_job_submit_with_token_auth(head, tmp_path):
    env, address = head
    token = run([str(BIN / "ray"), "get-auth-token"], env).stdout.strip()
    run_dir = tmp_path / "run"
    submit = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".", "--",
              "rlsys", "train", "configs/demo.yaml", "trainer.total_steps=1", f"trainer.run_dir={run_dir}",
              "rollout.num_workers=1", "learner.num_ranks=1", "data.prompts_per_step=4",
              "rollout.samples_per_prompt=4", "data.num_eval=4", "trainer.eval_samples=1",
              f"model.cache_dir={REPO / '.cache' / 'rlsys'}"]
    # Without the token the cluster refuses the job.
    no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"} | {
        "RAY_AUTH_MODE": "token", "HOME": str(tmp_path / "home")}  # HOME hides ~/.ray/auth_token
    refused = run(submit, no_token, check=False, timeout=120)
    assert refused.returncode != 0
    for _ in range(12):  # the head's job agent can take a while to register on a loaded machine
        done = run(submit, env | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}, timeout=900, check=False)
        if "No available agent" not in done.stderr:
            break
        time.sleep(10)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout.lower(), done.stdout[-3000:]
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [0]
    assert json.loads((run_dir / "summary.json").read_text())["rollout_versions"] == [1]
