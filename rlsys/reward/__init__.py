"""Rewards: verifiers (pure ``verify(response, reference) -> VerifyResult`` functions registered by
name) and the grading service that runs them in worker processes with a hard time limit.
Must not import ray, vllm or deepspeed (the service is wrapped as an actor in rlsys/orchestration).
"""
from rlsys.reward.verifiers import get_verifier, register_verifier

__all__ = ["get_verifier", "register_verifier"]
