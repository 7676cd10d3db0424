"""`ray job submit --working-dir . -- rlsys train ...` against a running two-node cluster with Ray's
token authentication left on, as the README shows it: roles placed on nodes by custom resources and node labels,
checked from Ray's state API; the run's metrics read from Ray's Prometheus export while it runs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
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
def two_nodes(tmp_path):
    """A head node labelled ``rlsys-role=learner`` and a second node, started with ``ray start --address``,
    labelled ``rlsys-role=rollout`` and offering the custom resource ``rollout_node``; both on 127.0.0.1,
    token auth on. Yields
    (env, dashboard URL, Prometheus export URL of the head)."""
    env = os.environ | {"PATH": f"{BIN}:{os.environ['PATH']}", "DS_ACCELERATOR": "cpu",
                        "VLLM_CPU_KVCACHE_SPACE": "1", "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    env.pop("RLSYS_LOG_LEVEL", None)
    head_ports, node_ports = PortBlock(), PortBlock()  # held until the test ends: nobody else gets these
    gcs, dash, metrics = head_ports.port(0), head_ports.port(1), head_ports.port(6)
    temp_dir = tempfile.mkdtemp(prefix="rlsys-ray-")  # short: Ray's unix socket paths are limited to 107 bytes
    run([str(BIN / "ray"), "get-auth-token", "--generate"], env)
    head_ports.release()
    node_ports.release()
    try:
        run([str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
             "--num-cpus", "2", "--labels", "rlsys-role=learner", "--dashboard-host", "127.0.0.1",
             "--dashboard-port", str(dash), "--ray-client-server-port", str(head_ports.port(2)),
             *ray_start_port_args(head_ports), "--disable-usage-stats", "--temp-dir", temp_dir], env, timeout=180)
        run([str(BIN / "ray"), "start", "--address", f"127.0.0.1:{gcs}", "--node-ip-address", "127.0.0.1",
             "--num-cpus", "2", "--resources", json.dumps({"rollout_node": 2}), "--labels", "rlsys-role=rollout",
             *ray_start_port_args(node_ports),
             "--disable-usage-stats"], env | {"RAY_AUTH_MODE": "token"}, timeout=180)  # joins with the token
    except BaseException:
        stop_cluster(temp_dir)
        head_ports.close()
        node_ports.close()
        raise
    try:
        yield env, f"http://127.0.0.1:{dash}", f"http://127.0.0.1:{metrics}/metrics"
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        head_ports.close()
        node_ports.close()


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


def ray_list(kind: str, address: str, env) -> list[dict]:
    """`ray list <kind> --detail` of the test's cluster, as records (the state API, over the CLI so the
    token stays out of this process, which also drives the session's own cluster)."""
    out = run([str(BIN / "ray"), "list", kind, "--address", address, "--detail", "--format", "json",
               "--limit", "1000"], env).stdout
    return json.loads(out[out.index("["):])


def scrape(url: str) -> dict[str, list[tuple[str, float]]]:
    """Prometheus text of the head's metrics export: ``rlsys_*`` series -> [(labels, value)]."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    found: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        m = re.match(r"^(?:ray_)?(rlsys_[A-Za-z0-9_]+)\{([^}]*)\} (\S+)", line)
        if m:
            found.setdefault(m.group(1), []).append((m.group(2), float(m.group(3))))
    return found


def test_two_node_job_places_roles_by_resource_and_label_and_exports_metrics(two_nodes, tmp_path):
    env, address, metrics_url = two_nodes
    token = run([str(BIN / "ray"), "get-auth-token"], env).stdout.strip()
    auth = env | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    run_dir = tmp_path / "two-node-run"
    submit = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".", "--no-wait", "--",
              "rlsys", "train", "configs/demo.yaml", "trainer.total_steps=2", f"trainer.run_dir={run_dir}",
              "rollout.num_workers=1", "learner.num_ranks=2", "data.prompts_per_step=4",
              "rollout.samples_per_prompt=4", "data.num_eval=4", "trainer.eval_samples=1",
              "rollout.resources={rollout_node: 1}", "learner.label_selector={rlsys-role: learner}",
              "reward.label_selector={rlsys-role: '!learner'}",
              "learner.placement=pack", f"model.cache_dir={REPO / '.cache' / 'rlsys'}"]
    # Without the token the cluster refuses the job.
    no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"} | {
        "RAY_AUTH_MODE": "token", "HOME": str(tmp_path / "home")}  # HOME hides ~/.ray/auth_token
    assert run(submit, no_token, check=False, timeout=120).returncode != 0
    for _ in range(12):  # the head's job agent can take a while to register on a loaded machine
        sent = run(submit, auth, timeout=300, check=False)
        if "No available agent" not in sent.stderr:
            break
        time.sleep(10)
    assert sent.returncode == 0, sent.stdout[-3000:] + sent.stderr[-3000:]
    job_id = re.search(r"raysubmit_[A-Za-z0-9]+", sent.stdout + sent.stderr).group(0)

    # While the run is live, the head's Prometheus export carries its metrics, tagged with the run.
    seen: dict[str, list[tuple[str, float]]] = {}
    status = ""
    deadline = finished_by = time.time() + 900
    while time.time() < deadline:
        series = scrape(metrics_url)
        if "rlsys_reward_accuracy_mean" in series:
            seen = series
        status = run([str(BIN / "ray"), "job", "status", "--address", address, job_id], auth).stdout.lower()
        succeeded = f"job '{job_id.lower()}' succeeded" in status
        if "failed" in status or "stopped" in status or (succeeded and seen):
            break
        if succeeded and time.time() > finished_by + 30:  # the last export is at most ~10 s late
            break
        if not succeeded:
            finished_by = time.time()
        time.sleep(2)
    logs = run([str(BIN / "ray"), "job", "logs", "--address", address, job_id], auth).stdout
    assert f"job '{job_id.lower()}' succeeded" in status, status + logs[-4000:]
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [0, 1]

    for name in ("rlsys_reward_accuracy_mean", "rlsys_entropy_token_mean", "rlsys_perf_step_seconds",
                 "rlsys_perf_rollout_seconds", "rlsys_reward_verifier_timeout_rate", "rlsys_step"):
        assert name in seen, sorted(seen)[:50]
        labels, value = seen[name][0]
        assert f'run="{run_dir.name}"' in labels, labels
        key = {"rlsys_step": "step"}.get(name, name.removeprefix("rlsys_").replace("_", "/", 1))
        logged = {r[key] for r in rows if key in r}
        assert any(abs(value - v) <= 1e-6 * max(1.0, abs(v)) for v in logged), (name, value, logged)

    # Placement, from Ray's state API: the engine on the node with the rollout_node resource, both ranks
    # on the node labelled learner (a placement group with a bundle label selector), the reward actor
    # on a node not labelled learner.
    nodes = {n["node_id"]: n["resources_total"] | (n.get("labels") or {}) for n in ray_list("nodes", address, auth)}
    actors = ray_list("actors", address, auth)
    where = {a["repr_name"]: nodes[a["node_id"]] for a in actors if a.get("repr_name")}
    assert {n for n in where if n.startswith(("rollout-", "learner-rank-"))} == {
        "rollout-0", "learner-rank-0", "learner-rank-1"}, where
    assert all("rollout_node" in where[n] for n in where if n.startswith("rollout-"))
    assert all(where[n].get("rlsys-role") == "learner" for n in where if n.startswith("learner-rank-")), where
    controllers = [a for a in actors if a.get("name") == "entropy_controller"]
    assert [(a["name"], a["ray_namespace"]) for a in controllers] == [("entropy_controller", "rlsys")]
    assert "reward-0" in where and where["reward-0"].get("rlsys-role") == "rollout", where
