"""Benchmark: one-step-off training (trainer.async_steps=1) against synchronous steps, same run otherwise.

Runs `rlsys train <config>` twice in one session, as a user would (fresh run dirs under
runs/bench-async/), with trainer.async_steps=0 (the baseline) and 1, and compares the median of
perf/step_seconds over the steps after the first WARMUP (the first steps include one-off costs), plus
the whole run's wall time. Both runs have the same seeds, so the only difference is the overlap of
the next step's rollout with this step's learner update. Outputs results/async.json and async.png.

Usage: .venv/bin/python benchmarks/bench_async.py [--config configs/demo.yaml] [--steps 40] [--set k=v ...]
Run it on an otherwise idle machine (under `flock /tmp/rlsys-integration.lock` next to other Ray jobs).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `common` when run as a script

from common import new_figure, relpath, save_figure, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WARMUP = 3  # steps left out of the medians


def run(config: str, async_steps: int, steps: int, overrides: list[str]) -> dict:
    name = Path(config).stem
    run_dir = REPO / "runs" / "bench-async" / f"{name}-async{async_steps}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run (a left-over checkpoint would resume)
    cmd = [str(Path(sys.executable).parent / "rlsys"), "train", config, f"trainer.run_dir={run_dir}",
           f"trainer.total_steps={steps}", f"trainer.async_steps={async_steps}", "trainer.save_every=0", *overrides]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"async_steps={async_steps} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                           f"{result.stderr[-3000:]}")
    train = [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]
    after = train[WARMUP:]

    def median(key: str):
        values = [r[key] for r in after if key in r]
        return statistics.median(values) if values else None

    return {"async_steps": async_steps, "wall_seconds": round(wall, 1), "steps": len(train),
            "step_seconds_median": median("perf/step_seconds"), "rollout_seconds_median": median("perf/rollout_seconds"),
            "learner_step_seconds_median": median("perf/learner_step_seconds"),
            "sync_seconds_median": median("perf/sync_seconds"), "async_wait_seconds_median": median("async/wait_seconds"),
            "staleness_steps": [r.get("async/staleness_steps") for r in train],
            "accuracy_last10": statistics.fmean(r["reward/accuracy_mean"] for r in train[-10:]),
            "step_seconds": [r["perf/step_seconds"] for r in train]}


def plot(rows: list[dict], config: str) -> Path:
    fig, (ax,) = new_figure(1, 7.0)
    for r in rows:
        ax.plot(r["step_seconds"], label=f"async_steps={r['async_steps']} (median {r['step_seconds_median']:.2f} s)")
    ax.set_xlabel("step")
    ax.set_ylabel("perf/step_seconds")
    ax.set_title(f"one-step-off vs synchronous, {config}")
    ax.legend()
    return save_figure(fig, "async")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    rows = []
    for async_steps in (0, 1):
        rows.append(run(args.config, async_steps, args.steps, args.overrides))
        print(f"  async_steps={async_steps}: step median {rows[-1]['step_seconds_median']:.3f} s, "
              f"wall {rows[-1]['wall_seconds']:.0f} s", flush=True)
    sync, one_off = rows
    ratios = {"step_seconds_async_vs_sync": round(one_off["step_seconds_median"] / sync["step_seconds_median"], 3),
              "wall_async_vs_sync": round(one_off["wall_seconds"] / sync["wall_seconds"], 3)}
    png = plot(rows, args.config)
    path = write_json("async", {"baseline": "the same run with trainer.async_steps=0", "config": args.config,
                                "steps": args.steps, "overrides": args.overrides, "warmup_steps_excluded": WARMUP,
                                "rows": rows, "ratios": ratios, "plot": relpath(png)})
    print(json.dumps({"json": relpath(path), "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
