"""Shared helpers for the benchmarks: machine info, a timer, child processes, JSON and plots.

Every benchmark reports a ratio against a baseline measured in the same run, never an absolute
target: absolute numbers depend on the machine and on what else runs on it. Benchmarks live outside
the package; this module may import torch and matplotlib but not ray, vllm or deepspeed.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


def machine_info() -> dict:
    """What the numbers were measured on: CPU count, library versions, a UTC timestamp."""
    import torch

    return {"cpu_count": os.cpu_count(), "torch_version": torch.__version__,
            "torch_num_threads": torch.get_num_threads(), "python": platform.python_version(),
            "platform": platform.platform(), "cuda_available": torch.cuda.is_available(),
            "timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def timings(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls.

    Ratios use the minimum: on a shared machine the fastest run is the least disturbed one.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def run_child(script: Path, args: list[str], timeout_s: float = 600.0) -> dict:
    """Run ``python script args...`` in a fresh process; its last stdout line must be a JSON object.

    A fresh process per measurement gives each its own ``ru_maxrss`` (peak RSS), untouched by the
    allocations of earlier measurements.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=timeout_s, env=env, cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_json(name: str, payload: dict) -> Path:
    """Write ``payload`` plus machine info to ``results/<name>.json``; return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine_info(), **payload}, indent=1) + "\n")
    return path


def new_figure(ncols: int, width_per_col: float = 5.0):
    """(figure, axes list) with the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width_per_col * ncols, 4.0), squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, name: str) -> Path:
    """Save ``fig`` to ``results/<name>.png`` and close it; return the path."""
    import matplotlib.pyplot as plt

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def relpath(path: Path) -> str:
    """``path`` relative to the repository root (no absolute paths of this machine in outputs)."""
    return str(Path(path).resolve().relative_to(REPO_ROOT))
