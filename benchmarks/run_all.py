"""Run every quick benchmark and write benchmarks/results/summary.json (what ``make bench`` runs).

Each benchmark writes its own results/<name>.json and .png; the summary keeps the headline ratios.
bench_weight_sync.py is not run here (it starts vLLM engines: over 3 minutes on 2 cores); see
benchmarks/README.md. Must not import ray, vllm or deepspeed.
Usage: ``python benchmarks/run_all.py [--quick]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_entropy  # noqa: E402  (needs the path above)
import bench_grading  # noqa: E402
import bench_grading_hostile  # noqa: E402
from common import RESULTS_DIR, machine_info, relpath  # noqa: E402

BENCHMARKS = {"entropy": bench_entropy.main, "grading": bench_grading.main,
              "grading_hostile": bench_grading_hostile.main}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = parser.parse_args()
    summary, failed = {"machine": machine_info(), "quick": args.quick, "benchmarks": {}}, []
    for name, run in BENCHMARKS.items():
        print(f"[bench] {name}", flush=True)
        start = time.perf_counter()
        try:
            summary["benchmarks"][name] = {**run(args.quick), "seconds": round(time.perf_counter() - start, 1)}
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' numbers
            summary["benchmarks"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append(name)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "summary.json"
    path.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary["benchmarks"], indent=1))
    print(f"[bench] wrote {relpath(path)}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":  # the grading service's forkserver re-imports this script: keep it guarded
    sys.exit(main())
