"""``rlsys plot RUN_DIR``: pictures of a run from its ``metrics.jsonl``, written to ``RUN_DIR/plots``.

One figure per question a person asks of a run: is it learning (reward accuracy, held-out pass@k),
what is entropy doing (overall, per difficulty bucket, the controller's target), what is the
controller doing (coefficients), and where does the time go (stage seconds). Series a run did not
log are left out; a figure with none of its series is not written. Must not import ray, vllm or
deepspeed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rlsys.metrics.compute import P_BUCKETS


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    ylabel: str
    train_keys: tuple[str, ...]  # series from the train rows (one point per step)
    eval_keys: tuple[str, ...] = ()  # series from the evaluation rows (markers)
    dashed: tuple[str, ...] = ()  # drawn dashed: targets and bounds


FIGURES = (
    Figure("reward", "Reward accuracy and held-out pass@k", "accuracy",
           ("reward/accuracy_mean",), ("eval/pass@1", "eval/pass@4", "eval/pass@8")),
    Figure("entropy", "Token entropy (nats): overall, by group-accuracy bucket, controller target", "entropy",
           ("entropy/token_mean", *(f"entropy/bucket/{b}" for b in P_BUCKETS), "entropy/target"),
           dashed=("entropy/target",)),
    Figure("coefficients", "Entropy coefficients from the controller", "coefficient",
           ("entropy/coef_mean", "entropy/coef_max", "entropy/coef_global")),
    Figure("stage_times", "Seconds per step, by stage", "seconds",
           ("perf/step_seconds", "perf/rollout_seconds", "perf/reward_seconds", "perf/learner_step_seconds",
            "perf/sync_seconds")),
)


class RunDirError(ValueError):
    """The run dir has no readable metrics.jsonl."""


def read_rows(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise RunDirError(f"{run_dir}: no metrics.jsonl (is it the run_dir of an rlsys train run?)")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise RunDirError(f"{path}:{number}: not a JSON row ({e.msg})") from None
        if not isinstance(row, dict) or "step" not in row or row.get("kind") not in ("train", "eval"):
            raise RunDirError(f"{path}:{number}: not a metrics row (needs 'step' and kind 'train' or 'eval')")
        rows.append(row)
    return rows


def series(rows: list[dict], kind: str, key: str) -> tuple[list[int], list[float]]:
    points = [(row["step"], row[key]) for row in rows if row["kind"] == kind and key in row]
    return [s for s, _ in points], [v for _, v in points]


def write_plots(run_dir: Path) -> list[Path]:
    """Write ``run_dir/plots/<figure>.png`` for every figure with data; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(run_dir)
    out_dir = Path(run_dir) / "plots"
    written = []
    for spec in FIGURES:
        lines = [("train", k) for k in spec.train_keys] + [("eval", k) for k in spec.eval_keys]
        data = [(kind, key, *series(rows, kind, key)) for kind, key in lines]
        data = [d for d in data if d[2]]
        if not data:
            continue
        fig, ax = plt.subplots(figsize=(7.0, 4.0))
        for kind, key, steps, values in data:
            style = {"linestyle": "--"} if key in spec.dashed else {}
            if kind == "eval":
                style = {"marker": "o", "linestyle": ":"}
            ax.plot(steps, values, label=key, **style)
        ax.set(title=spec.title, xlabel="step", ylabel=spec.ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{spec.name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
