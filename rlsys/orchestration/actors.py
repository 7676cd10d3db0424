"""Thin Ray shells around the plain role classes, and the typed worker groups the driver calls.

``RolloutGroup`` (vLLM engines), ``LearnerGroup`` (DeepSpeed ranks forming one process group),
``RewardClient`` (the grading service actor) and ``ControllerClient`` (the named entropy-controller
actor). Every remote call goes through a named, typed method here; no method-name strings.
"""
from __future__ import annotations

import socket
import time
from typing import Optional

import ray

from rlsys.algo.batch import shard
from rlsys.algo.loss import LossSpec
from rlsys.config import (Config, EntropyControlConfig, LearnerConfig, RewardConfig, RolloutConfig)
from rlsys.orchestration.cluster import actor_env
from rlsys.types import (ControlDirectives, LearnerStats, PromptStats, RolloutBatch, SamplingRequest,
                         ScoredBatch, TrainBatch)

CONTROLLER_NAME = "entropy_controller"


def _options(num_cpus: float, num_gpus: float = 0.0, extra_env: Optional[dict] = None) -> dict:
    env = actor_env() | (extra_env or {})
    return {"num_cpus": num_cpus, "num_gpus": num_gpus, "runtime_env": {"env_vars": env}}


# ---------------------------------------------------------------- rollout

def _rollout_actor_class():
    from rlsys.rollout.engine import VLLMRolloutEngine

    class RolloutWorker(VLLMRolloutEngine):
        """A vLLM engine whose policy version can be read remotely."""

        def get_policy_version(self) -> int:
            return self.policy_version

    return ray.remote(RolloutWorker)


class RolloutGroup:
    """N vLLM engine actors; prompts are split across them, weights pushed to all of them."""

    def __init__(self, cfg: RolloutConfig, model_path: str, dtype: str):
        env = {"VLLM_CPU_KVCACHE_SPACE": str(cfg.kv_cache_space_gb)}
        Engine = _rollout_actor_class()
        self.workers = [Engine.options(**_options(cfg.num_cpus_per_worker, cfg.num_gpus_per_worker, env))
                        .remote(cfg, model_path, i, dtype) for i in range(cfg.num_workers)]
        ray.get([w.__ray_ready__.remote() for w in self.workers])

    def generate(self, requests: list[SamplingRequest], policy_version: int) -> RolloutBatch:
        """Balance requests (by sample count) over workers; one generate call per worker."""
        start = time.perf_counter()
        buckets: list[list[SamplingRequest]] = [[] for _ in self.workers]
        load = [0] * len(self.workers)
        for req in sorted(requests, key=lambda r: -r.n):
            w = load.index(min(load))
            buckets[w].append(req)
            load[w] += req.n
        refs = [w.generate.remote(b, policy_version) for w, b in zip(self.workers, buckets) if b]
        by_prompt: dict[str, list] = {}
        for samples in ray.get(refs):
            for s in samples:
                by_prompt.setdefault(s.prompt_id, []).append(s)
        order = list(dict.fromkeys(r.prompt.prompt_id for r in requests))
        samples = tuple(s for pid in order for s in by_prompt.get(pid, []))
        prompts = tuple({r.prompt.prompt_id: r.prompt for r in requests}.values())
        return RolloutBatch(prompts=prompts, samples=samples, policy_version=policy_version,
                            generate_seconds=time.perf_counter() - start)

    def load_weights(self, blob_ref: "ray.ObjectRef", policy_version: int) -> list[int]:
        """Every worker pulls the same serialized weights object once; returns their versions."""
        return ray.get([w.load_weights.remote(blob_ref, policy_version) for w in self.workers])

    def policy_versions(self) -> list[int]:
        return ray.get([w.get_policy_version.remote() for w in self.workers])

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

        def rendezvous_address(self) -> tuple[str, int]:
            with socket.socket() as s:
                s.bind(("", 0))
                port = s.getsockname()[1]
            return ray.util.get_node_ip_address(), port

        def set_policy_version(self, version: int) -> None:
            self.policy_version = version

    return ray.remote(LearnerRank)


class LearnerGroup:
    """``learner.num_ranks`` DeepSpeed ranks forming one torch.distributed group."""

    def __init__(self, cfg: LearnerConfig, model_path: str, loss_spec: LossSpec, dtype: str):
        Rank = _learner_actor_class()
        env = {"DS_ACCELERATOR": "cpu"} if cfg.num_gpus_per_rank == 0 else {}
        self.ranks = [Rank.options(**_options(cfg.num_cpus_per_rank, cfg.num_gpus_per_rank, env))
                      .remote(cfg, model_path, loss_spec, dtype) for _ in range(cfg.num_ranks)]
        addr, port = ray.get(self.ranks[0].rendezvous_address.remote())
        ray.get([r.setup.remote(i, len(self.ranks), addr, port) for i, r in enumerate(self.ranks)])
        self.policy_version = 0
        self.model_path = model_path

    def train_step(self, batch: TrainBatch) -> LearnerStats:
        shards = shard(batch, len(self.ranks))
        per_rank: list[LearnerStats] = ray.get([r.train_step.remote(s) for r, s in zip(self.ranks, shards)])
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
        ray.get([r.set_policy_version.remote(version) for r in self.ranks])
        self.policy_version = version

    def full_state_dict_ref(self) -> "ray.ObjectRef":
        """Safetensors bytes of the full weights, left in the object store (rank 0's result)."""
        refs = [r.full_state_dict_bytes.remote() for r in self.ranks]
        ray.wait(refs, num_returns=len(refs))
        return refs[0]

    def save_checkpoint(self, path: str) -> None:
        ray.get([r.save_checkpoint.remote(path) for r in self.ranks])

    def load_checkpoint(self, path: str, policy_version: int) -> None:
        ray.get([r.load_checkpoint.remote(path) for r in self.ranks])
        self.set_policy_version(policy_version)

    def shutdown(self) -> None:
        for r in self.ranks:
            ray.kill(r)


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
    """The reward/verifier service actor (a pool of grading processes inside)."""

    def __init__(self, cfg: RewardConfig):
        from rlsys.reward.service import RewardService

        Service = ray.remote(RewardService)
        self.actor = Service.options(**_options(cfg.num_cpus)).remote(
            cfg.num_workers, cfg.timeout_s, cfg.verifier_paths)

    def score(self, rollout: RolloutBatch) -> ScoredBatch:
        return ray.get(self.actor.score.remote(rollout))

    def shutdown(self) -> None:
        ray.get(self.actor.close.remote())
        ray.kill(self.actor)


# ---------------------------------------------------------------- entropy controller

class _ControllerHost:
    """Hosts the configured controller state machine inside the named actor."""

    def __init__(self, cfg: EntropyControlConfig, samples_per_prompt: int, prompts_per_step: int,
                 regular_temperature: float):
        from rlsys.control import make_controller

        self.controller = make_controller(cfg, samples_per_prompt, prompts_per_step, regular_temperature)

    def observe(self, stats: list[PromptStats], policy_version: int) -> ControlDirectives:
        return self.controller.observe(stats, policy_version)

    def record_learner_stats(self, stats: LearnerStats) -> None:
        self.controller.record_learner_stats(stats)

    def state_dict(self) -> dict:
        return self.controller.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.controller.load_state_dict(state)


class ControllerClient:
    """The central entropy-controller actor, named ``entropy_controller`` in the run's namespace."""

    def __init__(self, cfg: Config):
        Host = ray.remote(_ControllerHost)
        self.actor = Host.options(name=CONTROLLER_NAME, num_cpus=0).remote(
            cfg.entropy_control, cfg.rollout.samples_per_prompt, cfg.data.prompts_per_step, cfg.rollout.temperature)

    def observe(self, stats: list[PromptStats], policy_version: int) -> ControlDirectives:
        return ray.get(self.actor.observe.remote(stats, policy_version))

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
