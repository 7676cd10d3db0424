"""AER (Adaptive Entropy Regularization, arXiv 2510.10959) controller: lambda_q = alpha_k * w(p_q).

docs/algorithms.md#aer; the whole controller is a reconstruction, labelled [C] there (no public
code or method section was available). Must not import ray, vllm or deepspeed.

Order (docs/algorithms.md#entropy-controller): observe() at step k uses alpha_k and step-k rewards;
record_learner_stats() with step-k's pre-update entropy H_k freezes H_0 (first ``warmup_batches``
measurements) and sets alpha_{k+1} = clip(alpha_k + eta * (H* - H_k), 0, alpha_max), H* = tau * H_0.
Choices made here [C]:
  * H_k is the token-mean over all tokens of the step (not only regularised prompts).
  * While H_0 is still being averaged (warmup_batches > 1) alpha is held; the first update uses the
    measurement that completes H_0.
  * Log-space update (``update="log"``): alpha <- alpha * exp(eta * (H* - H_k)). alpha = 0 has no
    logarithm, so a positive step restarts from LOG_FLOOR_FRACTION * alpha_max, and a value that
    falls below that floor snaps to 0 (so alpha can still reach 0 as in the additive rule).
    ``eta`` is then in log-units per nat, not coefficient-units per nat.
"""
from __future__ import annotations

import math
from typing import Optional

from rlsys.config import EntropyControlConfig
from rlsys.control.base import PlainStateMixin, group_accuracy, make_directives, measured_token_entropy
from rlsys.types import ControlDirectives, LearnerStats, PromptStats

LOG_FLOOR_FRACTION = 1e-3  # log-space restart point / cut-off, as a fraction of alpha_max


def difficulty_weight(p: float, rule: str, rho: float) -> float:
    """w(p_q): ``indicator`` = 1[p <= rho], ``linear`` = 1 - p; 0 for solved prompts (p = 1).

    Non-increasing in p under both rules (property 8).
    """
    if p >= 1.0:
        return 0.0
    if rule == "indicator":
        return 1.0 if p <= rho else 0.0
    if rule == "linear":
        return max(0.0, 1.0 - p)
    raise ValueError(f"aer_weight={rule!r}: expected indicator | linear")


def next_alpha(alpha: float, error: float, lr: float, alpha_max: float, update: str) -> float:
    """alpha_{k+1} from alpha_k and error = H* - H_k (> 0 when entropy is below target).

    ``additive``: clip(alpha + lr * error, 0, alpha_max). ``log``: see the module docstring.
    """
    if update == "additive":
        return min(max(alpha + lr * error, 0.0), alpha_max)
    if update != "log":
        raise ValueError(f"aer_update={update!r}: expected additive | log")
    floor = LOG_FLOOR_FRACTION * alpha_max
    log_step = lr * error
    if alpha <= 0.0:
        if log_step <= 0.0 or floor <= 0.0:
            return 0.0
        alpha = floor
    new = alpha * math.exp(min(log_step, 700.0))  # 700: keep exp() finite; the clip caps it anyway
    return 0.0 if new < floor else min(new, alpha_max)


class AERController(PlainStateMixin):
    """Difficulty-aware per-prompt coefficients with an initial-anchored target (docs/algorithms.md#aer)."""

    name = "aer"
    _STATE_FIELDS = ("alpha", "h0", "warmup_sum", "warmup_count", "last_entropy", "step",
                     "learner_steps")

    def __init__(self, cfg: EntropyControlConfig) -> None:
        self.tau, self.rho, self.weight = cfg.aer_tau, cfg.aer_rho, cfg.aer_weight
        self.lr, self.alpha_max, self.update = cfg.aer_alpha_lr, cfg.aer_alpha_max, cfg.aer_update
        self.warmup_batches = max(1, cfg.aer_warmup_batches)
        difficulty_weight(0.0, self.weight, self.rho)  # fail fast on a bad rule name
        self.alpha = min(max(float(cfg.aer_alpha_init), 0.0), self.alpha_max)  # alpha_k
        self.h0: Optional[float] = None  # frozen once warmup_count reaches warmup_batches
        self.warmup_sum = 0.0
        self.warmup_count = 0
        self.last_entropy: Optional[float] = None  # H_{k-1}, for the logged error
        self.step = 0
        self.learner_steps = 0

    @property
    def target(self) -> Optional[float]:
        """H* = tau * H_0, None until H_0 is known."""
        return None if self.h0 is None else self.tau * self.h0

    def observe(self, stats: list[PromptStats], policy_version: int) -> ControlDirectives:
        self.step += 1
        coef_P = [self.alpha * difficulty_weight(group_accuracy(s), self.weight, self.rho) for s in stats]
        return make_directives(stats, policy_version, coef_P, globals=self._globals())

    def _globals(self) -> dict[str, float]:
        g = {"coef_global": self.alpha}
        if self.h0 is not None:
            g["entropy_initial"] = self.h0
            g["entropy_target"] = self.tau * self.h0
            if self.last_entropy is not None:
                g["entropy_error"] = self.tau * self.h0 - self.last_entropy
        return g

    def record_learner_stats(self, stats: LearnerStats) -> None:
        entropy = measured_token_entropy(stats)
        if self.h0 is None:
            self.warmup_sum += entropy
            self.warmup_count += 1
            if self.warmup_count >= self.warmup_batches:
                self.h0 = self.warmup_sum / self.warmup_count
        if self.h0 is not None:
            error = self.tau * self.h0 - entropy
            self.alpha = next_alpha(self.alpha, error, self.lr, self.alpha_max, self.update)
        self.last_entropy = entropy
        self.learner_steps += 1
