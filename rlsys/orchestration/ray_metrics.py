"""Ray dashboard metrics: every logged scalar becomes a ``ray.util.metrics.Gauge``.

Gauge names cannot contain '/', '@' or '=', so ``entropy/token_mean`` is exported as
``rlsys_entropy_token_mean``; the original key is kept in the description. Every series carries a
``run`` tag (the run dir's name), so runs sharing a cluster, and Grafana panels over them, stay apart.
"""
from __future__ import annotations

import re

from ray.util.metrics import Gauge


def gauge_name(key: str) -> str:
    return "rlsys_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


class RayMetricsSink:
    def __init__(self, run: str):
        self.run = run
        self.gauges: dict[str, Gauge] = {}

    def write(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in ({"step": float(step)} | metrics).items():
            if key not in self.gauges:
                self.gauges[key] = Gauge(gauge_name(key), description=key, tag_keys=("run",))
            self.gauges[key].set(value, tags={"run": self.run})
