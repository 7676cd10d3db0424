"""Ctrl-C on a real `rlsys train`: SIGINT to the whole process group, as a terminal sends it.

The run finishes the step in progress, saves a checkpoint (even with trainer.save_every=0), prints
one line, shuts every actor and the embedded cluster down and exits 130; no process of the run is
left behind.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def session_processes(sid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid:
                out.append(p)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            pass
    return out


def test_ctrl_c_saves_a_checkpoint_and_shuts_everything_down(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [str(BIN / "rlsys"), "train", "configs/demo.yaml", "trainer.total_steps=200", "trainer.save_every=0",
           f"trainer.run_dir={run_dir}", "rollout.num_workers=1", "learner.num_ranks=1", "data.prompts_per_step=4",
           "rollout.samples_per_prompt=4", "data.num_eval=4", "trainer.eval_samples=1",
           f"model.cache_dir={REPO / '.cache' / 'rlsys'}"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group, like a terminal's job
    lines = []
    try:
        deadline = time.time() + 600
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("step   1 ") or time.time() > deadline:
                break
        assert any(x.startswith("step   1 ") for x in lines), "".join(lines[-40:])
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=180)
        lines.append(out)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = "".join(lines)
    assert proc.returncode == 130, text[-3000:]
    assert "[rlsys] SIGINT: finishing this step" in text
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps_done = max(r["step"] for r in rows if r["kind"] == "train") + 1
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    assert latest == f"step_{steps_done:06d}"
    assert f"stopped by SIGINT after step {steps_done - 1}" in text
    deadline = time.time() + 30
    while session_processes(proc.pid) and time.time() < deadline:
        time.sleep(0.5)
    left = [" ".join(p.cmdline()[:3]) for p in session_processes(proc.pid) if p.is_running()]
    assert not left, left
