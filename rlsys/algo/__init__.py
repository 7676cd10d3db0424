"""Pure tensor maths of the RLVR algorithms (docs/algorithms.md): advantages, the one entropy definition,
sharding-invariant aggregation, the parametric policy loss, reward shaping/filters and HORA allocation.

torch (and numpy) only: nothing here imports ray, vllm, deepspeed or rlsys.config.
"""
from rlsys.algo.advantages import ADV_MODES, compute_advantages, group_mean_std
from rlsys.algo.aggregate import AGG_MODES, aggregate, masked_global_sum
from rlsys.algo.entropy import entropy_from_logits, logp_and_entropy_from_logits
from rlsys.algo.hora import HORA_UTILITIES, greedy_allocate, hit_curve, hit_utility, unsolved_hit_curve, unsolved_hit_utility
from rlsys.algo.loss import LossSpec, clipped_surrogate, k3_kl, policy_loss, token_covariance
from rlsys.algo.shaping import (ADMIT_MASKS, KEEP_MASKS, AdmitRule, KeepRule, informative_groups, keep_mask,
                                overlong_penalty, overlong_positive_mask, replay_admit_mask)

__all__ = [
    "ADMIT_MASKS", "ADV_MODES", "AGG_MODES", "HORA_UTILITIES", "KEEP_MASKS", "AdmitRule", "KeepRule", "LossSpec",
    "aggregate", "clipped_surrogate", "compute_advantages",
    "entropy_from_logits", "greedy_allocate", "group_mean_std", "hit_curve", "hit_utility",
    "informative_groups", "k3_kl", "keep_mask", "logp_and_entropy_from_logits",
    "masked_global_sum", "overlong_penalty", "overlong_positive_mask", "policy_loss", "replay_admit_mask", "token_covariance",
    "unsolved_hit_curve", "unsolved_hit_utility",
]
