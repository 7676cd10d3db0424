"""The one metrics writer: a JSONL file in the run directory, one short stdout line per step,
and optional sinks (the Ray dashboard gauges live in rlsys/orchestration/ray_metrics.py).
Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Protocol


class MetricsSink(Protocol):
    def write(self, step: int, metrics: dict[str, float]) -> None: ...


def _finite(metrics: dict) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[k] = float(v)
    return out


class MetricsLogger:
    def __init__(self, path: Path, sinks: tuple | list = (), echo: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a")
        self.sinks = list(sinks)
        self.echo = echo
        self.start = time.time()

    def log(self, step: int, metrics: dict) -> None:
        clean = self._write(step, "train", metrics)
        if self.echo:
            print(step_line(step, clean), flush=True)

    def log_eval(self, step: int, metrics: dict) -> None:
        clean = self._write(step, "eval", metrics)
        if self.echo:
            parts = [f"{k.removeprefix('eval/')} {v:.3f}" for k, v in clean.items()]
            print(f"[eval @ step {step}] " + " | ".join(parts), flush=True)

    def _write(self, step: int, kind: str, metrics: dict) -> dict[str, float]:
        clean = _finite(metrics)
        self.file.write(json.dumps({"step": step, "kind": kind, "time": time.time() - self.start} | clean) + "\n")
        self.file.flush()
        for sink in self.sinks:
            sink.write(step, clean)
        return clean

    def close(self) -> None:
        self.file.close()


def step_line(step: int, m: dict[str, float]) -> str:
    """`step 3 | accuracy 0.42 | entropy 1.234 | 4.1 s (rollout 1.0, reward 0.2, learner 2.5, sync 0.1)`."""
    def g(key, fmt="{:.3f}"):
        return fmt.format(m[key]) if key in m else "-"
    return (f"step {step:3d} | accuracy {g('reward/accuracy_mean')} | entropy {g('entropy/token_mean')}"
            f" | coef {g('entropy/coef_mean', '{:.2e}')} | {g('perf/step_seconds', '{:.1f}')} s (rollout "
            f"{g('perf/rollout_seconds', '{:.1f}')}, reward {g('perf/reward_seconds', '{:.1f}')}, learner "
            f"{g('perf/learner_step_seconds', '{:.1f}')}, sync {g('perf/sync_seconds', '{:.2f}')})")
