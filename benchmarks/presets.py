"""Every method preset in the demo setting: step time, entropy and accuracy after the same number of
steps (benchmarks/results/presets.json + presets.png). Step-time ratios are against the grpo preset
of the same run; each preset is a fresh ``rlsys train`` (own embedded cluster, own run dir).

Usage: .venv/bin/python benchmarks/presets.py [--steps 40] [--config configs/demo.yaml] [--set k=v ...] [preset ...]
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
PRESETS = ["grpo", "dapo", "drgrpo", "entropy_fixed", "skywork", "clip_cov", "kl_cov", "aer", "uec_rl", "asymgrpo"]
LAST_STEPS = 10  # train accuracy / entropy are averaged over this many final steps (single steps are noisy)


def run_preset(name: str, steps: int, config: str, overrides: list[str]) -> dict:
    run_dir = REPO / "runs" / "bench-presets" / name
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time (a left-over checkpoint would resume)
    cmd = [str(Path(sys.executable).parent / "rlsys"), "train", config, f"algo={name}",
           f"trainer.total_steps={steps}", f"trainer.run_dir={run_dir}", *overrides]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"preset": name, "error": proc.stderr[-2000:]}
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train" and "perf/step_seconds" in r]
    evals = [r for r in rows if r["kind"] == "eval"]
    tail = train[-LAST_STEPS:]
    return {"preset": name, "steps": len(train), "wall_seconds": round(wall, 1),
            "step_seconds_median": statistics.median(r["perf/step_seconds"] for r in train),
            "entropy_token_mean_first": train[0].get("entropy/token_mean"),
            f"entropy_token_mean_last{LAST_STEPS}": statistics.fmean(r["entropy/token_mean"] for r in tail),
            f"train_accuracy_first{LAST_STEPS}": statistics.fmean(
                r["reward/accuracy_mean"] for r in train[:LAST_STEPS]),
            f"train_accuracy_last{LAST_STEPS}": statistics.fmean(r["reward/accuracy_mean"] for r in tail),
            "eval_pass@1_before": evals[0].get("eval/pass@1"), "eval_pass@1_after": evals[-1].get("eval/pass@1"),
            "eval_temperature": evals[-1].get("eval/temperature"),
            "curves": {"entropy": [r["entropy/token_mean"] for r in train],
                       "accuracy": [r["reward/accuracy_mean"] for r in train]}}


def plot(results: list[dict]) -> Path:
    fig, (ax_h, ax_acc) = new_figure(2, 6.0)
    for r in results:
        if "error" in r:
            continue
        ax_h.plot(r["curves"]["entropy"], label=r["preset"])
        acc = r["curves"]["accuracy"]
        smooth = [statistics.fmean(acc[max(0, i - 4):i + 1]) for i in range(len(acc))]
        ax_acc.plot(smooth, label=r["preset"])
    ax_h.set(title="exact token-mean entropy", xlabel="step")
    ax_acc.set(title="train accuracy (5-step moving mean)", xlabel="step")
    ax_acc.legend(fontsize=7, ncol=2)
    return save_figure(fig, "presets")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every preset (repeatable)")
    parser.add_argument("presets", nargs="*", default=PRESETS)
    args = parser.parse_args()
    results = []
    for name in args.presets:
        results.append(run_preset(name, args.steps, args.config, args.set))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "curves"}), flush=True)
    base = next((r for r in results if r["preset"] == "grpo" and "error" not in r), None)
    for r in results:
        if base and "error" not in r:
            r["step_time_ratio_vs_grpo"] = r["step_seconds_median"] / base["step_seconds_median"]
    figure = plot(results)
    path = write_json("presets", {"config": args.config, "overrides": args.set, "steps": args.steps, "figure": relpath(figure),
                                  "results": results})
    print(f"wrote {relpath(path)} and {relpath(figure)}")


if __name__ == "__main__":
    main()
