"""Run every method preset in the demo setting for a few steps and tabulate step time, entropy and
accuracy (benchmarks/results/presets.json). Ratios are against the grpo preset of the same run.

Usage: .venv/bin/python benchmarks/presets.py [--steps 10] [preset ...]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRESETS = ["grpo", "dapo", "drgrpo", "entropy_fixed", "skywork", "clip_cov", "kl_cov", "aer", "uec_rl", "asymgrpo"]


def run_preset(name: str, steps: int) -> dict:
    run_dir = REPO / "runs" / f"preset-{name}"
    cmd = [str(Path(sys.executable).parent / "rlsys"), "train", "configs/demo.yaml", f"algo={name}",
           f"trainer.total_steps={steps}", f"trainer.run_dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"preset": name, "error": proc.stderr[-2000:]}
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train" and "perf/step_seconds" in r]
    evals = [r for r in rows if r["kind"] == "eval"]
    return {"preset": name, "steps": len(train),
            "step_seconds_median": statistics.median(r["perf/step_seconds"] for r in train),
            "entropy_token_mean_last": train[-1].get("entropy/token_mean"),
            "train_accuracy_last": train[-1].get("reward/accuracy_mean"),
            "eval_pass@1_before": evals[0].get("eval/pass@1"), "eval_pass@1_after": evals[-1].get("eval/pass@1")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("presets", nargs="*", default=PRESETS)
    args = parser.parse_args()
    results = []
    for name in args.presets:
        results.append(run_preset(name, args.steps))
        print(json.dumps(results[-1]), flush=True)
    base = next((r for r in results if r["preset"] == "grpo" and "error" not in r), None)
    for r in results:
        if base and "error" not in r:
            r["step_time_ratio_vs_grpo"] = r["step_seconds_median"] / base["step_seconds_median"]
    out = REPO / "benchmarks" / "results" / "presets.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
