"""Metrics: pure functions from stage records to namespaced ``{"ns/name": float}`` dicts.

The logger that writes them lives elsewhere; nothing here imports ray, vllm or deepspeed.
"""
from rlsys.metrics.compute import (
    P_BUCKETS, advantage_metrics, coef_metrics, entropy_metrics, filter_metrics, is_correct, mean_pass_at_k,
    p_bucket, pass_at_k, reward_metrics, rollout_metrics, sampler_metrics, truncation_metrics,
)

__all__ = [
    "P_BUCKETS", "advantage_metrics", "coef_metrics", "entropy_metrics", "filter_metrics", "is_correct",
    "mean_pass_at_k", "p_bucket", "pass_at_k", "reward_metrics", "rollout_metrics", "sampler_metrics",
    "truncation_metrics",
]
