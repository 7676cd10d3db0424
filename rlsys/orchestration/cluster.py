"""Start an embedded local Ray cluster or join a running one.

The only place besides actors.py that talks to Ray's global state. With no ``cluster.address``
and no ``RAY_ADDRESS`` (set by ``ray job submit``), a local cluster is started in-process.
"""
from __future__ import annotations

import os

import ray

from rlsys.config import Config


def actor_env() -> dict[str, str]:
    """Environment every rlsys actor needs (CPU DeepSpeed accelerator, quiet tokenizers)."""
    env = {"TOKENIZERS_PARALLELISM": "false", "RAY_DEDUP_LOGS": "0"}
    for key in ("DS_ACCELERATOR", "TORCH_EXTENSIONS_DIR", "VLLM_CPU_KVCACHE_SPACE", "OMP_NUM_THREADS"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def cpus_needed(cfg: Config) -> float:
    return (cfg.rollout.num_workers * cfg.rollout.num_cpus_per_worker
            + cfg.learner.num_ranks * cfg.learner.num_cpus_per_rank + cfg.reward.num_cpus + 0.5)


def connect(cfg: Config) -> str:
    """Initialise Ray for this driver; returns a short description of the cluster joined."""
    address = cfg.cluster.address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return "already initialised"
    if address:
        ray.init(address=address, namespace=cfg.cluster.namespace, log_to_driver=True)
        return f"joined {address}"
    num_cpus = cfg.cluster.num_cpus or int(max(cpus_needed(cfg) + 1, os.cpu_count() or 1) + 0.999)
    ray.init(num_cpus=num_cpus, namespace=cfg.cluster.namespace, include_dashboard=cfg.cluster.include_dashboard,
             runtime_env={"env_vars": actor_env()}, log_to_driver=True, _node_ip_address="127.0.0.1")
    return f"embedded local cluster ({num_cpus} logical CPUs)"


def check_resources(cfg: Config) -> None:
    """Fail before starting actors when the cluster cannot host them, naming the config keys."""
    total = ray.cluster_resources()
    need_cpu = cpus_needed(cfg)
    if total.get("CPU", 0) < need_cpu:
        raise RuntimeError(
            f"cluster has {total.get('CPU', 0)} CPUs but the config asks for {need_cpu}: "
            f"rollout.num_workers*rollout.num_cpus_per_worker + learner.num_ranks*learner.num_cpus_per_rank"
            f" + reward.num_cpus (lower them, or set cluster.num_cpus for an embedded cluster)")
    need_gpu = (cfg.rollout.num_workers * cfg.rollout.num_gpus_per_worker
                + cfg.learner.num_ranks * cfg.learner.num_gpus_per_rank)
    if need_gpu and total.get("GPU", 0) < need_gpu:
        raise RuntimeError(f"cluster has {total.get('GPU', 0)} GPUs but the config asks for {need_gpu} "
                           f"(rollout.num_gpus_per_worker, learner.num_gpus_per_rank)")


def shutdown() -> None:
    if ray.is_initialized():
        ray.shutdown()
