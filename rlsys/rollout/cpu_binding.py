"""Which cores a CPU vLLM engine's threads run on (``rollout.cpu_threads_bind``).

vLLM's own ``auto`` binding picks the cores of the first NUMA node minus one reserved for its
scheduler, the same for every engine on a node: on a 2-core machine every engine binds to core 0, so
a second engine adds no compute. ``spread`` gives engine ``i`` its own block of cores instead, as
many as its Ray CPUs round to (at least one), blocks laid out by worker index over the cores this
process may run on. Pure Python: imports neither vllm nor ray.
"""
from __future__ import annotations

from typing import Optional, Sequence

CPU_BIND_MODES = ("spread", "vllm", "nobind")  # mirrored by rlsys.config.CPU_THREADS_BIND_MODES


def omp_threads_bind(mode: str, worker_index: int, cpus_per_worker: float,
                     allowed_cpus: Sequence[int]) -> Optional[str]:
    """The value of ``VLLM_CPU_OMP_THREADS_BIND`` for engine ``worker_index``: a core list such as "1"
    or "2,3" (spread), "nobind", or None (vllm: leave the variable as it is; vLLM's default is "auto")."""
    if mode not in CPU_BIND_MODES:
        raise ValueError(f"rollout.cpu_threads_bind={mode!r}: must be one of {CPU_BIND_MODES}")
    if mode == "vllm":
        return None
    if mode == "nobind":
        return "nobind"
    cores = sorted(allowed_cpus)
    if not cores:
        raise ValueError("no CPU is allowed for this process (os.sched_getaffinity is empty)")
    n = min(len(cores), max(1, int(cpus_per_worker)))
    first = (worker_index * n) % len(cores)
    return ",".join(str(cores[(first + j) % len(cores)]) for j in range(n))
