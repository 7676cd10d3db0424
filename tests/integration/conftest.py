"""Session fixtures for the integration tier: one real local Ray cluster, the project's tiny model,
and ONE set of vLLM rollout engines, reward service and prompts shared by every test (engines take
30-80 s to start). Learner groups and controllers are created per test.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def integration_config(*overrides: str):
    from rlsys.config import load_config

    base = ["data.prompts_per_step=8", "rollout.samples_per_prompt=4", "data.num_eval=8",
            "trainer.eval_samples=2", "trainer.total_steps=2", "learner.micro_batch_size=16",
            f"model.cache_dir={REPO / '.cache' / 'rlsys'}"]
    return load_config(str(REPO / "configs" / "demo.yaml"), base + list(overrides))


@dataclass
class Stack:
    model_path: str
    rollout: object
    reward: object

    def serve_base_weights(self) -> int:
        """Make the shared engines serve the base model again (an earlier test may have trained them),
        at a new policy version; returns it. Tests that sample without a learner call this first."""
        import ray

        version = max(self.rollout.policy_versions()) + 1
        blob = (Path(self.model_path) / "model.safetensors").read_bytes()
        self.rollout.load_weights(ray.put(blob), version)
        return version


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    ray.init(num_cpus=8, namespace="rlsys-tests", include_dashboard=False, _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false",
                                          "PYTHONPATH": str(REPO)}})  # tests.* importable in actors
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def stack(ray_cluster):
    from rlsys.models.resolve import resolve_model
    from rlsys.orchestration.actors import RewardClient, RolloutGroup

    cfg = integration_config()
    model_path = resolve_model(cfg.model)
    rollout = RolloutGroup(cfg.rollout, model_path, cfg.model.dtype)
    reward = RewardClient(cfg.reward)
    yield Stack(model_path=model_path, rollout=rollout, reward=reward)
    rollout.shutdown()
    reward.shutdown()


def start_run_workers(stack: Stack, cfg):
    """A fresh learner group and controller for ``cfg`` on the session's engines and reward service;
    returns (workers, prompt stream, eval prompts). Stop them with ``stop_run_workers``."""
    from rlsys.data.setup import build_prompt_sources
    from rlsys.orchestration.actors import ControllerClient, LearnerGroup
    from rlsys.orchestration.driver import Workers, loss_spec

    stream, eval_prompts = build_prompt_sources(cfg.data, stack.model_path)
    learner = LearnerGroup(cfg.learner, stack.model_path, loss_spec(cfg), cfg.model.dtype)
    return Workers(rollout=stack.rollout, reward=stack.reward, learner=learner,
                   controller=ControllerClient(cfg)), stream, eval_prompts


def stop_run_workers(w) -> None:
    """Stop what ``start_run_workers`` started (the shared engines and reward service stay)."""
    w.learner.shutdown()
    w.controller.shutdown()
