"""Thin Ray shells around the plain role classes, and the typed worker groups the driver calls.

``RolloutGroup`` (vLLM engines), ``LearnerGroup`` (DeepSpeed ranks forming one process group),
``RewardClient`` (the grading service actor) and ``ControllerClient`` (the named entropy-controller
actor). Every remote call goes through a named, typed method here; no method-name strings.
``start_groups`` starts all four roles at once and waits for them together (``wait_started``).
"""
from __future__ import annotations

import dataclasses
import os
import socket
import time
from pathlib import Path
from typing import Callable, Optional

import ray

from rlsys.algo.batch import shard
from rlsys.algo.loss import LossSpec
from rlsys.config import (Config, EntropyControlConfig, LearnerConfig, RewardConfig, RolloutConfig)
from rlsys.orchestration.cluster import actor_env
from rlsys.types import (ControlDirectives, LearnerStats, PromptStats, PromptStatsColumns, RolloutBatch, SamplingRequest,
                         ScoredBatch, TrainBatch)

CONTROLLER_NAME = "entropy_controller"


def _options(num_cpus: float, num_gpus: float = 0.0, extra_env: Optional[dict] = None, max_restarts: int = 0,
             resources: Optional[dict] = None, scheduling_strategy=None, label_selector: Optional[dict] = None) -> dict:
    env = actor_env() | (extra_env or {})
    # max_task_retries=0: the groups below retry a dead actor's call themselves, after re-syncing it.
    options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "runtime_env": {"env_vars": env},
               "max_restarts": max_restarts, "max_task_retries": 0, "resources": dict(resources or {})}
    if scheduling_strategy is not None:
        options["scheduling_strategy"] = scheduling_strategy
    if label_selector:  # Ray node labels the actor's node must have (Ray's own selector syntax)
        options["label_selector"] = dict(label_selector)
    return options


def get_all(refs: list, names: list[str], timeout_s: Optional[float] = None) -> list:
    """``ray.get`` of one call per actor, in order. The first failure is raised at once, naming its
    actor: a live learner rank blocked in a collective with a dead one would otherwise hold the
    caller until the process group's timeout (30 min by default). With ``timeout_s`` (actor start:
    ``cluster.actor_start_timeout_s``), actors not done by then are named in a ``WorkerDied``."""
    pending = dict(zip(refs, names))
    done: dict = {}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while pending:
        wait_s = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=wait_s)
        if not ready:
            raise NotStarted(f"{', '.join(pending.values())} not started within {timeout_s:g} s "
                             f"(cluster.actor_start_timeout_s); resources free in the cluster now: "
                             f"{_resources(ray.available_resources())}")
        for ref in ready:
            name = pending.pop(ref)
            try:
                done[ref] = ray.get(ref)
            except ray.exceptions.RayActorError as err:
                raise WorkerDied(f"{name} died: {_actor_error_line(err)}") from err
            except ray.exceptions.RayTaskError as err:
                raise RuntimeError(f"{name} failed: {_first_line(err)}") from err
    return [done[ref] for ref in refs]


def _resources(res: dict) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(res.items()) if not k.startswith("node:")
                     and k not in ("memory", "object_store_memory")) or "none"


class WorkerDied(RuntimeError):
    """An actor the run cannot continue without died (a learner rank, or a worker past its restarts)."""


class NotStarted(WorkerDied):
    """Actors not up within ``cluster.actor_start_timeout_s`` (e.g. the cluster cannot place them)."""


@dataclasses.dataclass
class Starting:
    """The calls a group sent to start its actors, not waited for yet (``wait_started`` does).

    ``ready``: (ObjectRef, actor name), one per actor, done once it is constructed; bounded by
    ``cluster.actor_start_timeout_s``. ``setup``: calls queued behind them (the learner's process
    group and model), unbounded. ``hint``: more words for a start timeout, or "".
    """

    ready: list
    setup: list = dataclasses.field(default_factory=list)
    hint: Callable[[], str] = lambda: ""


def wait_started(groups: list, timeout_s: float) -> None:
    """Wait for the start calls of all ``groups`` together: every actor constructed within ``timeout_s``
    of now (a ``NotStarted`` names those that are not, and what the cluster has free), then every
    set-up call (a failure names its actor: ``learner-rank-1 died: ...``). The groups start
    concurrently, so the run waits for the slowest role, not for the sum of them. On any failure
    every group is shut down (actors still waiting for resources would otherwise stay queued)."""
    try:
        ready = [x for g in groups for x in g.starting.ready]
        try:
            get_all([ref for ref, _ in ready], [name for _, name in ready], timeout_s=timeout_s)
        except NotStarted as err:
            hints = [h for h in (g.starting.hint() for g in groups) if h]
            raise NotStarted("; ".join([str(err), *hints])) from err
        setup = [x for g in groups for x in g.starting.setup]
        get_all([ref for ref, _ in setup], [name for _, name in setup])
    except BaseException:
        shutdown_all(groups)
        raise


def shutdown_all(groups: list) -> None:
    """``shutdown()`` of every group, each even if an earlier one fails (a dead actor)."""
    for g in groups:
        try:
            g.shutdown()
        except Exception as err:  # noqa: BLE001 - the error that stopped the start is the one to raise
            print(f"[rlsys] shutdown of {type(g).__name__} after a failed start: {err}", flush=True)


def start_groups(cfg: Config, model_path: str, loss_spec: LossSpec
                 ) -> tuple["RolloutGroup", "RewardClient", "LearnerGroup", "ControllerClient"]:
    """Every role of a run started at once: the actors of all four are created without waiting, then
    ``wait_started`` waits for all of them within ``cluster.actor_start_timeout_s``. Returns
    (rollout, reward, learner, controller)."""
    timeout_s = cfg.cluster.actor_start_timeout_s
    groups: list = []
    try:  # the slowest to start first: the engines, then the learner ranks
        groups.append(RolloutGroup(cfg.rollout, model_path, cfg.model.dtype, timeout_s, wait=False))
        groups.append(LearnerGroup(cfg.learner, model_path, loss_spec, cfg.model.dtype, timeout_s, wait=False))
        groups.append(RewardClient(cfg.reward, timeout_s, wait=False))
        groups.append(ControllerClient(cfg, wait=False))
    except BaseException:
        shutdown_all(groups)
        raise
    wait_started(groups, timeout_s)
    rollout, learner, reward, controller = groups
    return rollout, reward, learner, controller


def _actor_error_line(err: "ray.exceptions.RayActorError") -> str:
    """Why an actor died, in one line: where its constructor raised, that exception (the last line of
    the creation task's traceback, which Ray's message ends with), else Ray's first line."""
    lines = [x.strip() for x in str(err).splitlines() if x.strip()]
    return lines[-1][:500] if err.actor_init_failed and lines else _first_line(err)


def _first_line(err: Exception) -> str:
    lines = [x for x in str(err).splitlines() if x.strip()]
    return lines[0][:300] if lines else type(err).__name__


class Restarter:
    """Calls into actors that Ray restarts after a crash (``max_restarts``): a call that fails
    because its actor died waits for the restart (bounded by ``timeout_s``), lets ``resync`` bring
    the fresh actor up to date, and is sent again, at most ``max_restarts`` times per call."""

    def __init__(self, role: str, max_restarts: int, timeout_s: float):
        self.role, self.max_restarts, self.timeout_s = role, max_restarts, timeout_s
        self.restarts = 0  # restarts recovered from so far (<role>/actor_restarts)

    def call(self, actor, index: int, submit, resync=None):
        """``submit(actor)`` returns an ObjectRef; returns its value, recovering from deaths."""
        for attempt in range(self.max_restarts + 1):
            try:
                return ray.get(submit(actor))
            except ray.exceptions.RayActorError as err:
                if attempt == self.max_restarts:
                    raise WorkerDied(f"{self.role}-{index} died {attempt + 1} times (max_restarts="
                                     f"{self.max_restarts}): {_first_line(err)}") from err
                start = time.perf_counter()
                self._wait_alive(actor, index)
                if resync is not None:
                    resync(actor)
                self.restarts += 1
                print(f"[rlsys] {self.role}-{index} died and was restarted ({time.perf_counter() - start:.0f} s): "
                      f"{_first_line(err)}", flush=True)

    def get(self, actor, index: int, first_ref, resubmit, resync=None):
        """The value of ``first_ref`` (a call already sent to ``actor``); after a crash, of ``resubmit(actor)``."""
        sent = [first_ref]
        return self.call(actor, index, lambda a: sent.pop() if sent else resubmit(a), resync)

    def _wait_alive(self, actor, index: int) -> None:
        deadline = time.perf_counter() + self.timeout_s
        while True:
            try:
                ray.get(actor.__ray_ready__.remote(), timeout=max(1.0, deadline - time.perf_counter()))
                return
            except ray.exceptions.ActorUnavailableError:  # still restarting
                if time.perf_counter() > deadline:
                    break
                time.sleep(1.0)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as err:
                raise WorkerDied(f"{self.role}-{index} did not come back within {self.timeout_s:.0f} s "
                                 f"(cluster.actor_start_timeout_s): {_first_line(err)}") from err
        raise WorkerDied(f"{self.role}-{index} did not come back within {self.timeout_s:.0f} s "
                         f"(cluster.actor_start_timeout_s)")


def require_model_dir(model_path: str, actor: str) -> None:
    """In an actor, before its model loads: the driver's model dir must exist on this actor's node."""
    if not Path(model_path).is_dir():
        raise FileNotFoundError(f"{actor} on node {ray.util.get_node_ip_address()}: the model dir {model_path!r} "
                                f"the driver resolved does not exist here; on several nodes the model (model.path, "
                                f"or model.cache_dir for a built-in model) must be on a filesystem every node "
                                f"mounts at the same path")


# ---------------------------------------------------------------- rollout

def _rollout_actor_class():
    from rlsys.rollout.engine import VLLMRolloutEngine

    class RolloutWorker(VLLMRolloutEngine):
        """A vLLM engine whose policy version can be read remotely."""

        def __init__(self, cfg: RolloutConfig, model_path: str, worker_index: int = 0, dtype: str = "float32"):
            self.worker_index = worker_index  # first: __repr__ names the actor, also in the error of a failed start
            require_model_dir(model_path, f"rollout-{worker_index}")
            super().__init__(cfg, model_path, worker_index, dtype)

        def get_policy_version(self) -> int:
            return self.policy_version

        def pid(self) -> int:
            return os.getpid()

        def __repr__(self) -> str:  # the actor's name in the Ray dashboard and in its log lines
            return f"rollout-{self.worker_index}"

    return ray.remote(RolloutWorker)


class RolloutGroup:
    """N vLLM engine actors; prompts are split across them, weights pushed to all of them.

    A crashed engine is restarted by Ray (``rollout.max_restarts``), loaded with the weights last
    pushed, and its share of the interrupted call is generated again (``rollout/actor_restarts``).
    The last pushed weights stay in the object store for that until the next push replaces them.
    """

    def __init__(self, cfg: RolloutConfig, model_path: str, dtype: str, restart_timeout_s: float = 600.0,
                 wait: bool = True):
        """Creates the engine actors; waits for them unless ``wait=False`` (then ``wait_started`` does)."""
        env = {"VLLM_CPU_KVCACHE_SPACE": str(cfg.kv_cache_space_gb)}
        Engine = _rollout_actor_class()
        options = _options(cfg.num_cpus_per_worker, cfg.num_gpus_per_worker, env, cfg.max_restarts, cfg.resources,
                           label_selector=cfg.label_selector)
        self.workers = [Engine.options(**options).remote(cfg, model_path, i, dtype) for i in range(cfg.num_workers)]
        self.restarter = Restarter("rollout", cfg.max_restarts, restart_timeout_s)
        self._weights: Optional[tuple] = None  # (ObjectRef of the last pushed weights, its policy version)
        self.starting = Starting(ready=[(w.__ray_ready__.remote(), f"rollout-{i}") for i, w in enumerate(self.workers)])
        if wait:
            wait_started([self], restart_timeout_s)

    def generate(self, requests: list[SamplingRequest], policy_version: int) -> RolloutBatch:
        """Balance requests (by sample count) over workers; one generate call per worker."""
        start = time.perf_counter()
        buckets: list[list[SamplingRequest]] = [[] for _ in self.workers]
        load = [0] * len(self.workers)
        for req in sorted(requests, key=lambda r: -r.n):
            w = load.index(min(load))
            buckets[w].append(req)
            load[w] += req.n
        # Submit every worker's share first, so they generate concurrently; then collect each.
        refs = {i: w.generate.remote(b, policy_version) for i, (w, b) in enumerate(zip(self.workers, buckets)) if b}
        by_prompt: dict[str, list] = {}
        for i, ref in refs.items():
            samples = self._get_or_recover(i, ref, lambda w, b=buckets[i]: w.generate.remote(b, policy_version))
            for s in samples:
                by_prompt.setdefault(s.prompt_id, []).append(s)
        order = list(dict.fromkeys(r.prompt.prompt_id for r in requests))
        samples = tuple(s for pid in order for s in by_prompt.get(pid, []))
        prompts = tuple({r.prompt.prompt_id: r.prompt for r in requests}.values())
        return RolloutBatch(prompts=prompts, samples=samples, policy_version=policy_version,
                            generate_seconds=time.perf_counter() - start)

    def load_weights(self, blob_ref: "ray.ObjectRef", policy_version: int) -> list[int]:
        """Every worker pulls the same serialized weights object once; returns their versions."""
        self._weights = (blob_ref, policy_version)
        refs = [w.load_weights.remote(blob_ref, policy_version) for w in self.workers]
        return [self._get_or_recover(i, ref, lambda w: w.load_weights.remote(blob_ref, policy_version))
                for i, ref in enumerate(refs)]

    def policy_versions(self) -> list[int]:
        return [self._get_or_recover(i, w.get_policy_version.remote(), lambda w: w.get_policy_version.remote())
                for i, w in enumerate(self.workers)]

    def pids(self) -> list[int]:
        """Process id of every engine actor (fault-injection tests kill them)."""
        return [self._get_or_recover(i, w.pid.remote(), lambda w: w.pid.remote()) for i, w in enumerate(self.workers)]

    def _get_or_recover(self, index: int, first_ref, resubmit):
        """The value of ``first_ref`` (already sent to worker ``index``); after a crash, of ``resubmit(worker)``
        once the restarted engine has the last pushed weights."""
        return self.restarter.get(self.workers[index], index, first_ref, resubmit, self._resync)

    def _resync(self, worker) -> None:
        """A restarted engine serves the base weights at version 0: load the last pushed ones."""
        if self._weights is not None:
            ray.get(worker.load_weights.remote(*self._weights))

    def sequence_logprobs(self, token_ids: list[list[int]], prompt_lens: list[int]) -> list[list[list[float]]]:
        """Per worker: log-probs of each sequence's tokens after its prompt, under served weights."""
        return ray.get([w.sequence_logprobs.remote(token_ids, prompt_lens) for w in self.workers])

    def shutdown(self) -> None:
        for w in self.workers:
            ray.kill(w)


# ---------------------------------------------------------------- learner

def _learner_actor_class():
    from rlsys.learner.engine import Learner

    class LearnerRank(Learner):
        """A learner rank plus the one thing only an actor knows: where it runs."""

        def __init__(self, index: int, cfg: LearnerConfig, model_path: str, *args):
            self.index = index  # first: __repr__ names the actor, also in the error of a failed start
            require_model_dir(model_path, f"learner-rank-{index}")
            super().__init__(cfg, model_path, *args)

        def __repr__(self) -> str:  # the actor's name in the Ray dashboard and in its log lines
            return f"learner-rank-{self.index}"

        def rendezvous_address(self) -> tuple[str, int]:
            with socket.socket() as s:
                s.bind(("", 0))
                port = s.getsockname()[1]
            return ray.util.get_node_ip_address(), port

        def setup_at(self, rank: int, world_size: int, address: tuple[str, int]) -> None:
            """``setup`` at rank 0's ``rendezvous_address`` (an ObjectRef argument Ray resolves first)."""
            self.setup(rank, world_size, *address)

        def set_policy_version(self, version: int) -> None:
            self.policy_version = version

        def pid(self) -> int:
            return os.getpid()

        def read_text(self, path: str) -> tuple[str, Optional[str]]:
            """(this rank's node address, the text of ``path`` as this node sees it; None if unreadable)."""
            try:
                return ray.util.get_node_ip_address(), Path(path).read_text()
            except OSError:
                return ray.util.get_node_ip_address(), None

    return ray.remote(LearnerRank)


class LearnerGroup:
    """``learner.num_ranks`` DeepSpeed ranks forming one torch.distributed group."""

    def __init__(self, cfg: LearnerConfig, model_path: str, loss_spec: LossSpec, dtype: str,
                 start_timeout_s: float = 600.0, wait: bool = True):
        """Reserves the placement group, creates the ranks and queues their setup (process group, model,
        DeepSpeed engine) behind rank 0's rendezvous address, all without blocking; then waits for it
        unless ``wait=False`` (then ``wait_started`` does, together with the other roles)."""
        Rank = _learner_actor_class()
        env = {"DS_ACCELERATOR": "cpu"} if cfg.num_gpus_per_rank == 0 else {}
        self.cfg = cfg
        self.names = [f"learner-rank-{i}" for i in range(cfg.num_ranks)]
        self.placement_group = _placement_group(cfg)
        # In a placement group the bundles carry the label selector; without one, each rank does.
        selector = cfg.label_selector if self.placement_group is None else None
        self.ranks = [Rank.options(**_options(cfg.num_cpus_per_rank, cfg.num_gpus_per_rank, env, resources=cfg.resources,
                                              scheduling_strategy=self._strategy(i), label_selector=selector))
                      .remote(i, cfg, model_path, loss_spec, dtype) for i in range(cfg.num_ranks)]
        # rank 0's readiness call is its rendezvous address, which every rank's setup takes as its argument
        address = self.ranks[0].rendezvous_address.remote()
        ready = [address] + [r.__ray_ready__.remote() for r in self.ranks[1:]]
        setup = [r.setup_at.remote(i, len(self.ranks), address) for i, r in enumerate(self.ranks)]
        self.starting = Starting(ready=list(zip(ready, self.names)), setup=list(zip(setup, self.names)),
                                 hint=self._placement_hint)
        self.policy_version = 0
        self.model_path = model_path
        if wait:
            wait_started([self], start_timeout_s)

    def train_step(self, batch: TrainBatch) -> LearnerStats:
        shards = shard(batch, len(self.ranks))
        per_rank: list[LearnerStats] = get_all([r.train_step.remote(s) for r, s in zip(self.ranks, shards)], self.names)
        self.policy_version = per_rank[0].policy_version
        return merge_learner_stats(per_rank)

    def push_weights(self, rollout_group: RolloutGroup) -> tuple[int, dict[str, float]]:
        """Gather full weights (all ranks take part under ZeRO-3) and load them into every engine.

        Rank 0's serialized blob stays in the object store and goes to the engines by reference.
        """
        start = time.perf_counter()
        blob_ref = self.full_state_dict_ref()
        gathered = time.perf_counter()
        versions = rollout_group.load_weights(blob_ref, self.policy_version)
        if set(versions) != {self.policy_version}:
            raise RuntimeError(f"weight sync left rollout workers at versions {versions}, "
                               f"expected {self.policy_version}")
        return self.policy_version, {"sync/gather_seconds": gathered - start,
                                     "sync/load_seconds": time.perf_counter() - gathered}

    def align_rollout(self, rollout_group: RolloutGroup) -> int:
        """Make the engines serve this learner's weights before the first step (fresh engines, a resumed
        learner, or engines reused from an earlier run). Versions only move forward."""
        versions = rollout_group.policy_versions()
        if set(versions) == {self.policy_version}:
            return self.policy_version
        self.set_policy_version(max(max(versions) + 1, self.policy_version))
        return self.push_weights(rollout_group)[0]

    def set_policy_version(self, version: int) -> None:
        get_all([r.set_policy_version.remote(version) for r in self.ranks], self.names)
        self.policy_version = version

    def ranks_not_reading(self, path: str, text: str) -> list[str]:
        """The ranks (name and node) that do not see ``text`` in the file ``path``: on another node a
        node-local path does not exist, or holds something else."""
        seen = get_all([r.read_text.remote(path) for r in self.ranks], self.names)
        return [f"{name} (node {node})" for name, (node, got) in zip(self.names, seen) if got != text]

    def pids(self) -> list[int]:
        """Process id of every rank (fault-injection tests kill them)."""
        return get_all([r.pid.remote() for r in self.ranks], self.names)

    def param_bytes(self) -> list[int]:
        """Bytes of model parameters each rank holds (its partitions under ZeRO-3)."""
        return get_all([r.param_bytes.remote() for r in self.ranks], self.names)

    def full_state_dict_ref(self) -> "ray.ObjectRef":
        """Safetensors bytes of the full weights, left in the object store (rank 0's result).

        Every rank takes part (ZeRO-3 gathers); the other ranks' results (empty bytes) are read, so a
        failure there is raised naming the rank. Rank 0's bytes are not fetched here: an error of
        rank 0 reaches whoever reads the reference (the engines' load), with rank 0's traceback."""
        refs = [r.full_state_dict_bytes.remote() for r in self.ranks]
        get_all(refs[1:], self.names[1:])
        ray.wait(refs[:1], fetch_local=False)
        return refs[0]

    def save_checkpoint(self, path: str) -> None:
        get_all([r.save_checkpoint.remote(path) for r in self.ranks], self.names)

    def load_checkpoint(self, path: str, policy_version: int) -> None:
        get_all([r.load_checkpoint.remote(path) for r in self.ranks], self.names)
        self.set_policy_version(policy_version)

    def _placement_hint(self) -> str:
        """For a start timeout: what the ranks' placement group asked for, while it is not placed."""
        pg = self.placement_group
        if pg is None or ray.wait([pg.ready()], timeout=0)[0]:
            return ""
        return (f"the placement group of {', '.join(self.names)} asked for {len(self.names)} x "
                f"{_resources(_bundle(self.cfg))} (learner.placement={self.cfg.placement})")

    def _strategy(self, index: int):
        if self.placement_group is None:
            return None
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return PlacementGroupSchedulingStrategy(self.placement_group, placement_group_bundle_index=index)

    def shutdown(self) -> None:
        for r in self.ranks:
            ray.kill(r)
        if self.placement_group is not None:
            ray.util.remove_placement_group(self.placement_group)
            self.placement_group = None


def _placement_group(cfg: LearnerConfig):
    """The ranks' placement group (``learner.placement``: one bundle per rank, PACK keeps them on as few
    nodes as possible, SPREAD across nodes), requested without waiting: a rank scheduled into it starts
    once it is placed. None for ``none``."""
    if cfg.placement == "none":
        return None
    labels = {"bundle_label_selector": [dict(cfg.label_selector)] * cfg.num_ranks} if cfg.label_selector else {}
    return ray.util.placement_group([_bundle(cfg) for _ in range(cfg.num_ranks)], strategy=cfg.placement.upper(),
                                    **labels)


def _bundle(cfg: LearnerConfig) -> dict[str, float]:
    bundle = {"CPU": cfg.num_cpus_per_rank, "GPU": cfg.num_gpus_per_rank, **cfg.resources}
    return {k: v for k, v in bundle.items() if v > 0} or {"CPU": 0.001}  # Ray refuses empty bundles


def merge_learner_stats(per_rank: list[LearnerStats]) -> LearnerStats:
    """Scalars are already global (all-reduced) on every rank; per-sample vectors concatenate."""
    def cat(field):
        return tuple(x for st in per_rank for x in getattr(st, field))

    return LearnerStats(policy_version=per_rank[0].policy_version, scalars=dict(per_rank[0].scalars),
                        sample_index=cat("sample_index"),
                        entropy_token_mean_per_sample=cat("entropy_token_mean_per_sample"),
                        num_tokens_per_sample=cat("num_tokens_per_sample"),
                        old_logp_per_sample=cat("old_logp_per_sample"))


# ---------------------------------------------------------------- reward

class RewardClient:
    """``reward.num_actors`` reward/verifier service actors (a pool of grading processes in each); a
    batch is split over them by prompt and graded concurrently. A crashed service actor is restarted
    by Ray (``reward.max_restarts``) and its share of the batch is graded again."""

    def __init__(self, cfg: RewardConfig, restart_timeout_s: float = 600.0, wait: bool = True):
        """Creates the service actors (each starts its grading processes); waits for them unless ``wait=False``."""
        from rlsys.reward.service import RewardService

        class RewardActor(RewardService):
            def __init__(self, index: int, *args):
                super().__init__(*args)
                self.index = index

            def pid(self) -> int:
                return os.getpid()

            def __repr__(self) -> str:  # the actor's name in the Ray dashboard and in its log lines
                return f"reward-{self.index}"

        Service = ray.remote(RewardActor)
        options = _options(cfg.num_cpus, max_restarts=cfg.max_restarts, resources=cfg.resources,
                           label_selector=cfg.label_selector)
        self.actors = [Service.options(**options).remote(i, cfg.num_workers, cfg.timeout_s, cfg.verifier_paths)
                       for i in range(cfg.num_actors)]
        self.restarter = Restarter("reward", cfg.max_restarts, restart_timeout_s)
        self.starting = Starting(ready=[(a.__ray_ready__.remote(), f"reward-{i}") for i, a in enumerate(self.actors)])
        if wait:
            wait_started([self], restart_timeout_s)

    def score(self, rollout: RolloutBatch) -> ScoredBatch:
        """Grade the batch, the prompts split evenly over the actors (a prompt's samples stay together)."""
        shards, positions = split_by_prompt(rollout, len(self.actors))
        refs = [a.score.remote(part) for a, part in zip(self.actors, shards)]  # all actors grade at once
        scored = [self.restarter.get(self.actors[i], i, ref, lambda a, part=part: a.score.remote(part))
                  for i, (ref, part) in enumerate(zip(refs, shards))]
        return join_scored(rollout, positions, scored)

    def pid(self, index: int = 0) -> int:
        return self.restarter.call(self.actors[index], index, lambda a: a.pid.remote())

    def worker_pids(self, index: int = 0) -> list[int]:
        """Process ids of the grading processes inside service ``index`` (fault-injection tests kill them)."""
        return self.restarter.call(self.actors[index], index, lambda a: a.worker_pids.remote())

    def shutdown(self) -> None:
        for actor in self.actors:
            try:
                ray.get(actor.close.remote(), timeout=30)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass  # dead or stuck: the kill below ends it either way
            ray.kill(actor)


def split_by_prompt(rollout: RolloutBatch, n: int) -> tuple[list[RolloutBatch], list[list[int]]]:
    """(``n`` batches, fewer when there are fewer prompts, each with a contiguous share of the prompts
    and all of their samples in the original order; the positions of each batch's samples in ``rollout``)."""
    ids = list(dict.fromkeys([p.prompt_id for p in rollout.prompts] + [s.prompt_id for s in rollout.samples]))
    n = max(1, min(n, len(ids)))
    share = {pid: i * n // len(ids) for i, pid in enumerate(ids)}
    positions = [[i for i, s in enumerate(rollout.samples) if share[s.prompt_id] == k] for k in range(n)]
    batches = [dataclasses.replace(rollout, prompts=tuple(p for p in rollout.prompts if share[p.prompt_id] == k),
                                   samples=tuple(rollout.samples[i] for i in positions[k])) for k in range(n)]
    return batches, positions


def join_scored(rollout: RolloutBatch, positions: list[list[int]], scored: list[ScoredBatch]) -> ScoredBatch:
    """One ScoredBatch of ``rollout`` from its shards' (``split_by_prompt``) results: results in the
    batch's sample order, groups in order of first appearance (as one service gives them), the slowest
    shard's grading time."""
    if len(scored) == 1:
        return dataclasses.replace(scored[0], rollout=rollout)
    results: list = [None] * len(rollout.samples)
    for where, done in zip(positions, scored):
        for i, r in zip(where, done.results, strict=True):
            results[i] = r
    group_of = {g.prompt_id: g for done in scored for g in done.groups}
    order = dict.fromkeys(s.prompt_id for s in rollout.samples)
    return ScoredBatch(rollout=rollout, results=tuple(results), groups=tuple(group_of[pid] for pid in order),
                       policy_version=rollout.policy_version, grade_seconds=max(d.grade_seconds for d in scored),
                       timeout_count=sum(d.timeout_count for d in scored))


# ---------------------------------------------------------------- entropy controller

class _ControllerHost:
    """Hosts the configured controller state machine inside the named actor."""

    def __init__(self, cfg: EntropyControlConfig, samples_per_prompt: int, prompts_per_step: int,
                 regular_temperature: float):
        from rlsys.control import make_controller

        self.controller = make_controller(cfg, samples_per_prompt, prompts_per_step, regular_temperature)

    def observe(self, stats: PromptStatsColumns, policy_version: int) -> ControlDirectives:
        return self.controller.observe(stats.to_list(), policy_version)

    def record_learner_stats(self, stats: LearnerStats) -> None:
        self.controller.record_learner_stats(stats)

    def state_dict(self) -> dict:
        return self.controller.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.controller.load_state_dict(state)


class ControllerClient:
    """The central entropy-controller actor, named ``entropy_controller`` in the run's namespace."""

    def __init__(self, cfg: Config, wait: bool = True):
        Host = ray.remote(_ControllerHost)
        self.actor = Host.options(name=CONTROLLER_NAME, num_cpus=0).remote(
            cfg.entropy_control, cfg.rollout.samples_per_prompt, cfg.data.prompts_per_step, cfg.rollout.temperature)
        self.starting = Starting(ready=[(self.actor.__ray_ready__.remote(), CONTROLLER_NAME)])
        if wait:
            wait_started([self], cfg.cluster.actor_start_timeout_s)

    def observe(self, stats: list[PromptStats], policy_version: int) -> ControlDirectives:
        return ray.get(self.actor.observe.remote(PromptStatsColumns.of(stats), policy_version))

    def record_learner_stats(self, stats: LearnerStats) -> None:
        ray.get(self.actor.record_learner_stats.remote(stats))

    def state_dict(self) -> dict:
        return ray.get(self.actor.state_dict.remote())

    def load_state_dict(self, state: dict) -> None:
        ray.get(self.actor.load_state_dict.remote(state))

    def shutdown(self) -> None:
        ray.kill(self.actor)
        deadline = time.time() + 30
        while time.time() < deadline:  # the name is released asynchronously after the kill
            try:
                ray.get_actor(CONTROLLER_NAME)
            except ValueError:
                return
            time.sleep(0.2)
