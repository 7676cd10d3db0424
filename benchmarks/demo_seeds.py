"""The README's demo numbers, over seeds: `rlsys train configs/demo.yaml` as `make demo` runs it, once
per seed (rollout.seed and learner.seed set to it; the data split and the base model stay those of
the demo), reporting held-out pass@1 before -> after, train accuracy over the first and last 10
steps and by step 50, and the spread over seeds (benchmarks/results/demo_seeds.json + .png).

Usage: .venv/bin/python benchmarks/demo_seeds.py [--seeds 0 1 2] [--set k=v ...]
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
WINDOW = 10  # train accuracy is averaged over this many steps (single steps are noisy)


def run_seed(seed: int, overrides: list[str]) -> dict:
    run_dir = REPO / "runs" / "bench-demo-seeds" / f"seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run (a left-over checkpoint would resume)
    cmd = [str(Path(sys.executable).parent / "rlsys"), "train", "configs/demo.yaml", f"trainer.run_dir={run_dir}",
           f"rollout.seed={seed}", f"learner.seed={seed}", *overrides]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"seed {seed} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    acc = [r["reward/accuracy_mean"] for r in train]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"seed": seed, "wall_seconds": wall, "steps": len(train),
            "pass1_before": summary["eval_before"]["eval/pass@1"], "pass1_after": summary["eval_after"]["eval/pass@1"],
            "train_acc_first10": statistics.fmean(acc[:WINDOW]), "train_acc_last10": statistics.fmean(acc[-WINDOW:]),
            "train_acc_steps_45_54": statistics.fmean(acc[45:55]),
            "eval_after_by_level": {k.removeprefix("eval/accuracy_difficulty_"): v
                                    for k, v in summary["eval_after"].items() if "difficulty" in k},
            "train_accuracy": acc}


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    runs = []
    for seed in args.seeds:
        runs.append(run_seed(seed, args.overrides))
        r = runs[-1]
        print(f"seed {seed}: pass@1 {r['pass1_before']:.3f} -> {r['pass1_after']:.3f}, train accuracy "
              f"{r['train_acc_first10']:.3f} -> {r['train_acc_last10']:.3f} ({r['wall_seconds']:.0f} s)", flush=True)
    keys = ["pass1_before", "pass1_after", "train_acc_first10", "train_acc_last10", "train_acc_steps_45_54"]
    out = {"config": "configs/demo.yaml", "overrides": args.overrides,
           "spread": {k: spread([r[k] for r in runs]) for k in keys}, "runs": runs}
    path = write_json("demo_seeds", out)
    fig, (ax,) = new_figure(1, width_per_col=7.0)
    for r in runs:
        acc = r["train_accuracy"]
        smooth = [statistics.fmean(acc[max(0, i - WINDOW + 1):i + 1]) for i in range(len(acc))]
        ax.plot(smooth, label=f"seed {r['seed']}: pass@1 {r['pass1_before']:.2f} -> {r['pass1_after']:.2f}")
    ax.set_xlabel("step")
    ax.set_ylabel(f"train reward accuracy ({WINDOW}-step mean)")
    ax.set_title("make demo over seeds (configs/demo.yaml)")
    ax.legend()
    save_figure(fig, "demo_seeds")
    print(f"wrote {relpath(path)}")


if __name__ == "__main__":
    main()
