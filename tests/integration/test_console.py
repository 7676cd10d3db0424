"""What a person sees: a real `rlsys train` of the demo config prints rlsys's lines (the dashboard
address, one line per step with its ETA, the evaluations, the plots written) and no library INFO
logs or progress bars; its run dir gets the plots."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
NOISE = (re.compile(r"\bINFO\b"), re.compile(r"Loading (weights|safetensors)"), re.compile(r"\d+%\|"),
         re.compile(r"built successfully"), re.compile(r"FutureWarning"), re.compile(r"Enforce eager"))
RLSYS_LINE = re.compile(r"^(\[rlsys\]|\[eval @ step \d+\]|step +\d+ \|)")
# a WARNING vLLM's spawned processes log while importing vllm, before vLLM configures its logging and
# before any rlsys code runs in them (see rlsys/rollout/logs.py)
VLLM_IMPORT_WARNING = "Triton is installed, but doesn't include CPU backend"


def test_a_run_prints_one_line_per_step_and_no_library_noise(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [str(BIN / "rlsys"), "train", "configs/demo.yaml", "trainer.total_steps=3", f"trainer.run_dir={run_dir}",
           "rollout.num_workers=1", "learner.num_ranks=1", "data.prompts_per_step=4", "rollout.samples_per_prompt=4",
           "data.num_eval=4", "trainer.eval_samples=1", f"model.cache_dir={REPO / '.cache' / 'rlsys'}"]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RLSYS_LOG_LEVEL")}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    lines = [x for x in out.splitlines() if x.strip()]
    steps = [x for x in lines if x.startswith("step ")]
    assert [x.split("|")[0].split()[1] for x in steps] == ["0", "1", "2"]
    assert "eta" not in steps[0] and all(re.search(r"\| eta \d+s$", x) for x in steps[1:])
    assert re.search(r"Ray dashboard at http://127\.0\.0\.1:\d+", lines[0] + " ".join(lines[:3]))
    noisy = [x for x in lines if any(p.search(x) for p in NOISE)]
    assert not noisy, noisy
    others = [x for x in lines if not RLSYS_LINE.match(x)]
    assert all("WARNING" in x or VLLM_IMPORT_WARNING in x for x in others), others  # warnings only
    assert len(others) <= 4, others  # Ray's token-auth note, the import warning of the engine's processes
    assert sorted(p.name for p in (run_dir / "plots").iterdir()) == [
        "coefficients.png", "entropy.png", "reward.png", "stage_times.png"]
