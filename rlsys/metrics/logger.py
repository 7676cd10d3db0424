"""The one metrics writer: a JSONL file in the run directory, one short stdout line per step,
and optional sinks (the Ray dashboard gauges live in rlsys/orchestration/ray_metrics.py).
Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional, Protocol


class MetricsSink(Protocol):
    """Receives every row's finite scalars; a sink with a ``close()`` is closed with the logger."""

    def write(self, step: int, metrics: dict[str, float]) -> None: ...


def _numbers(metrics: dict) -> dict[str, float]:
    """The numeric metrics as floats, NaN and inf included (JSONL writes them as NaN/Infinity)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (bool, int, float))}


def nonfinite_keys(metrics: dict[str, float]) -> list[str]:
    return sorted(k for k, v in metrics.items() if not math.isfinite(v))


class MetricsLogger:
    """Writes ``path`` (JSONL, one row per train step or evaluation). A fresh run (``resume_step``
    None) refuses a file that already has rows; a run resumed after ``resume_step`` steps first
    drops the rows past its checkpoint (train rows of steps >= resume_step, evaluations after it),
    so every step appears once."""

    def __init__(self, path: Path, sinks: tuple | list = (), echo: bool = True, resume_step: Optional[int] = None,
                 total_steps: Optional[int] = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None and self.path.exists() and self.path.stat().st_size > 0:
            raise FileExistsError(f"{self.path} already holds metrics of an earlier run: resume it from a "
                                  f"checkpoint or use another run dir")
        if resume_step is not None and self.path.exists():
            keep = [line for line in self.path.read_text().splitlines() if _before(json.loads(line), resume_step)]
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(line + "\n" for line in keep))
            tmp.replace(self.path)
        self.file = open(self.path, "a")
        self.sinks = list(sinks)
        self.echo = echo
        self.start = time.time()
        self.eta = StepClock(total_steps)

    def log(self, step: int, metrics: dict) -> list[str]:
        """Write one train step; returns the keys whose value is NaN or infinite."""
        clean = self._write(step, "train", metrics)
        bad = nonfinite_keys(clean)
        eta = self.eta.tick(step)
        if self.echo:
            print(step_line(step, clean) + (f" | eta {format_seconds(eta)}" if eta is not None else "")
                  + (f" | NON-FINITE: {', '.join(bad)}" if bad else ""), flush=True)
        return bad

    def log_eval(self, step: int, metrics: dict) -> None:
        clean = self._write(step, "eval", metrics)
        if self.echo:
            parts = [f"{k.removeprefix('eval/')} {v:.3f}" for k, v in clean.items()]
            print(f"[eval @ step {step}] " + " | ".join(parts), flush=True)

    def _write(self, step: int, kind: str, metrics: dict) -> dict[str, float]:
        clean = _numbers(metrics)
        self.file.write(json.dumps({"step": step, "kind": kind, "time": time.time() - self.start} | clean) + "\n")
        self.file.flush()
        finite = {k: v for k, v in clean.items() if math.isfinite(v)}
        for sink in self.sinks:  # dashboards get finite values only; the JSONL row shows the rest
            sink.write(step, finite)
        return clean

    def close(self) -> None:
        self.file.close()
        for sink in self.sinks:
            if hasattr(sink, "close"):
                sink.close()


class StepClock:
    """Time left to ``total_steps``: the mean wall time of the last ``window`` steps (evaluations
    and checkpoints included) times the steps left; the first step has no estimate."""

    def __init__(self, total_steps: Optional[int], window: int = 10, clock=time.monotonic):
        self.total_steps, self.window, self.clock = total_steps, window, clock
        self.ticks: list[float] = []

    def tick(self, step: int) -> Optional[float]:
        self.ticks = (self.ticks + [self.clock()])[-(self.window + 1):]
        if self.total_steps is None or len(self.ticks) < 2:
            return None
        per_step = (self.ticks[-1] - self.ticks[0]) / (len(self.ticks) - 1)
        return per_step * max(0, self.total_steps - step - 1)


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _before(row: dict, resume_step: int) -> bool:
    """Whether a logged row belongs to the part of the run a checkpoint after ``resume_step`` steps holds."""
    return row["step"] < resume_step if row["kind"] == "train" else row["step"] <= resume_step


def step_line(step: int, m: dict[str, float]) -> str:
    """`step 3 | accuracy 0.42 | entropy 1.234 | 4.1 s (rollout 1.0, reward 0.2, learner 2.5, sync 0.1)`."""
    def g(key, fmt="{:.3f}"):
        return fmt.format(m[key]) if key in m else "-"
    return (f"step {step:3d} | accuracy {g('reward/accuracy_mean')} | entropy {g('entropy/token_mean')}"
            f" | coef {g('entropy/coef_mean', '{:.2e}')} | {g('perf/step_seconds', '{:.1f}')} s (rollout "
            f"{g('perf/rollout_seconds', '{:.1f}')}, reward {g('perf/reward_seconds', '{:.1f}')}, learner "
            f"{g('perf/learner_step_seconds', '{:.1f}')}, sync {g('perf/sync_seconds', '{:.2f}')})")
