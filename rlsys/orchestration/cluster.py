"""Start an embedded local Ray cluster or join a running one.

The only place besides actors.py that talks to Ray's global state. With no ``cluster.address``
and no ``RAY_ADDRESS`` (set by ``ray job submit``), a local cluster is started in-process. Ray is
imported only where it is used: the checks before start-up need none of it and must take no seconds.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import urllib.parse
from typing import Optional

from rlsys.config import Config, ConfigError
from rlsys.console import library_env, verbose


def actor_env() -> dict[str, str]:
    """Environment every rlsys actor needs (CPU DeepSpeed accelerator, quiet tokenizers, the
    libraries' log level: ``rlsys.console``)."""
    env = {"TOKENIZERS_PARALLELISM": "false", "RAY_DEDUP_LOGS": "0"} | library_env()
    for key in ("DS_ACCELERATOR", "TORCH_EXTENSIONS_DIR", "VLLM_CPU_KVCACHE_SPACE", "OMP_NUM_THREADS"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def cpus_needed(cfg: Config) -> float:
    """Ray CPUs the config's actors reserve (the controller actor reserves none)."""
    return (cfg.rollout.num_workers * cfg.rollout.num_cpus_per_worker
            + cfg.learner.num_ranks * cfg.learner.num_cpus_per_rank + cfg.reward.num_actors * cfg.reward.num_cpus)


def ray_address(cfg: Config) -> tuple[Optional[str], str]:
    """(address to join or None for an embedded cluster, the key it came from)."""
    if cfg.cluster.address:
        return cfg.cluster.address, "cluster.address"
    return os.environ.get("RAY_ADDRESS") or None, "RAY_ADDRESS"


def check_cluster(cfg: Config, need_cpus: Optional[tuple[float, str]] = None, connect_timeout_s: float = 3.0) -> None:
    """Checks needing no cluster, run before anything is written: an embedded cluster fits the
    machine (``need_cpus``: what the actors reserve and the keys that make it, default the training
    run's ``cpus_needed(cfg)``); a cluster to join answers at its address. Raises ConfigError naming the keys."""
    if _ray_initialized():  # joined already (an in-process caller): check_resources checks that cluster
        return
    address, key = ray_address(cfg)
    if address is None:
        check_embedded_fits(cfg, os.cpu_count() or 1, need_cpus)
    else:
        check_reachable(address, key, connect_timeout_s)


def _ray_initialized() -> bool:
    ray = sys.modules.get("ray")  # never imported: not initialised, and no need to spend seconds importing it
    return ray is not None and ray.is_initialized()


def check_embedded_fits(cfg: Config, machine_cpus: int, need_cpus: Optional[tuple[float, str]] = None) -> None:
    """An embedded cluster is never larger than the machine, and the actors' CPUs fit in it."""
    if cfg.cluster.num_cpus > machine_cpus:
        raise ConfigError(f"cluster.num_cpus={cfg.cluster.num_cpus}: this machine has {machine_cpus} CPUs; "
                          f"an embedded cluster is never larger than the machine")
    have = cfg.cluster.num_cpus or machine_cpus
    need, keys = need_cpus or (cpus_needed(cfg), _cpus_keys(cfg))
    if need > have:
        raise ConfigError(
            f"the config asks for {need:g} CPUs ({keys}) but the embedded cluster has {have} "
            f"({'cluster.num_cpus' if cfg.cluster.num_cpus else 'os.cpu_count()'}): lower them, or join a "
            f"larger cluster with cluster.address")


def _cpus_keys(cfg: Config) -> str:
    r, lr = cfg.rollout, cfg.learner
    return (f"rollout.num_workers={r.num_workers} x rollout.num_cpus_per_worker={r.num_cpus_per_worker:g} + "
            f"learner.num_ranks={lr.num_ranks} x learner.num_cpus_per_rank={lr.num_cpus_per_rank:g} + "
            f"reward.num_actors={cfg.reward.num_actors} x reward.num_cpus={cfg.reward.num_cpus:g}")


def address_host_port(address: str) -> Optional[tuple[str, int]]:
    """(host, port) a Ray address connects to, None when Ray resolves it itself ("auto", "local")
    or it names no port. Forms: host:port (GCS), ray://host:port (client, default port 10001),
    http(s)://host:port (dashboard / job API, default 80 / 443)."""
    if address in ("auto", "local"):
        return None
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "", address
    default = {"ray": 10001, "http": 80, "https": 443}.get(scheme.lower())
    try:
        parsed = urllib.parse.urlsplit("//" + rest)
        host, port = parsed.hostname, parsed.port or default
    except ValueError:  # a port that is not a number
        raise ConfigError(f"{address!r}: not a Ray address (host:port, ray://host:port or http://host:port)") from None
    if not host or port is None:
        return None
    return host, port


def check_reachable(address: str, key: str, timeout_s: float) -> None:
    """One bounded TCP connect to the address, so a wrong or stopped cluster fails in seconds
    instead of Ray retrying for minutes."""
    try:
        target = address_host_port(address)
    except ConfigError as e:
        raise ConfigError(f"{key}={e}") from None
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout_s).close()
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        raise ConfigError(f"{key}={address!r}: nothing answers at {target[0]}:{target[1]} ({reason} within "
                          f"{timeout_s:g} s): start the cluster, fix the address, or unset it for an embedded "
                          f"cluster") from None


def connect(cfg: Config) -> str:
    """Initialise Ray for this driver; returns a short description of the cluster joined."""
    import ray

    address, _ = ray_address(cfg)
    if ray.is_initialized():
        return "already initialised"
    if address:
        context = ray.init(address=address, namespace=cfg.cluster.namespace, log_to_driver=True,
                           logging_level=_ray_level())
        return f"joined {address}" + _dashboard(context)
    num_cpus = cfg.cluster.num_cpus or os.cpu_count() or 1  # never more than the machine (check_cluster)
    context = ray.init(num_cpus=num_cpus, namespace=cfg.cluster.namespace,
                       include_dashboard=cfg.cluster.include_dashboard, runtime_env={"env_vars": actor_env()},
                       log_to_driver=True, _node_ip_address="127.0.0.1", logging_level=_ray_level())
    return f"embedded local cluster ({num_cpus} logical CPUs)" + _dashboard(context)


def _dashboard(context) -> str:
    url = getattr(context, "dashboard_url", None)
    return f"; Ray dashboard at http://{url}" if url else ""


def _ray_level() -> int:
    return logging.INFO if verbose() else logging.WARNING


def check_resources(cfg: Config) -> None:
    """Fail before starting actors when the cluster cannot host them (ConfigError naming the keys);
    the one check that needs the cluster, run before anything is written to the run dir."""
    import ray

    total = ray.cluster_resources()
    need_cpu = cpus_needed(cfg)
    if total.get("CPU", 0) < need_cpu:
        raise ConfigError(f"the cluster has {total.get('CPU', 0):g} CPUs but the config asks for {need_cpu:g} "
                          f"({_cpus_keys(cfg)}): lower them, or join a larger cluster")
    r, lr = cfg.rollout, cfg.learner
    need_gpu = r.num_workers * r.num_gpus_per_worker + lr.num_ranks * lr.num_gpus_per_rank
    if need_gpu and total.get("GPU", 0) < need_gpu:
        raise ConfigError(
            f"the cluster has {total.get('GPU', 0):g} GPUs but the config asks for {need_gpu:g} "
            f"(rollout.num_workers={r.num_workers} x rollout.num_gpus_per_worker={r.num_gpus_per_worker:g} + "
            f"learner.num_ranks={lr.num_ranks} x learner.num_gpus_per_rank={lr.num_gpus_per_rank:g})")
    short = [f"{name}: the cluster has {total.get(name, 0):g}, the config asks for {need:g} ({keys})"
             for name, (need, keys) in custom_resources_needed(cfg).items() if total.get(name, 0) < need]
    if short:
        raise ConfigError("custom Ray resources missing: " + "; ".join(short) + " (start nodes with "
                          "`ray start --resources '{\"NAME\": N}'`, or change the role's resources key)")
    selectors = (cfg.rollout.label_selector, cfg.reward.label_selector, cfg.learner.label_selector)
    unmatched = unmatched_label_selectors(cfg, [n.get("Labels") or {} for n in ray.nodes() if n.get("Alive")]
                                          ) if any(selectors) else []
    if unmatched:
        raise ConfigError("no node has the labels " + "; ".join(unmatched) + " (start nodes with "
                          "`ray start --labels key=value`, or change the role's label_selector)")


def unmatched_label_selectors(cfg: Config, node_labels: list[dict[str, str]]) -> list[str]:
    """The roles' label selectors that no node (given by its labels) satisfies, each with its key."""
    roles = (("rollout.label_selector", cfg.rollout.label_selector), ("reward.label_selector", cfg.reward.label_selector),
             ("learner.label_selector", cfg.learner.label_selector))
    seen = sorted({f"{k}={v}" for labels in node_labels for k, v in labels.items() if not k.startswith("ray.io/")})
    return [f"{key}={dict(selector)} (the nodes' labels: {', '.join(seen) or 'none'})" for key, selector in roles
            if selector and not any(selector_matches(selector, labels) for labels in node_labels)]


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Ray's label-selector semantics: ``v`` equals, ``!v`` differs (or is absent), ``in(a,b)`` one of,
    ``!in(a,b)`` none of (or absent)."""
    for key, wanted in selector.items():
        negated, body = wanted.startswith("!"), wanted.removeprefix("!")
        allowed = ({x.strip() for x in body[3:-1].split(",")} if body.startswith("in(") and body.endswith(")")
                   else {body})
        if (labels.get(key) in allowed) == negated:
            return False
    return True


def custom_resources_needed(cfg: Config) -> dict[str, tuple[float, str]]:
    """Per custom resource name: (total the actors ask for, the keys that make it)."""
    roles = (("rollout.num_workers", cfg.rollout.num_workers, "rollout.resources", cfg.rollout.resources),
             ("reward.num_actors", cfg.reward.num_actors, "reward.resources", cfg.reward.resources),
             ("learner.num_ranks", cfg.learner.num_ranks, "learner.resources", cfg.learner.resources))
    need: dict[str, tuple[float, list[str]]] = {}
    for count_key, count, key, resources in roles:
        for name, amount in resources.items():
            total, keys = need.setdefault(name, (0.0, []))
            keys.append(f"{count_key}={count} x {key}.{name}={amount:g}")
            need[name] = (total + count * amount, keys)
    return {name: (total, " + ".join(keys)) for name, (total, keys) in need.items()}


def shutdown() -> None:
    if _ray_initialized():
        sys.modules["ray"].shutdown()
