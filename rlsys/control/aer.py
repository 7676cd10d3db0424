"""AER (Adaptive Entropy Regularization, arXiv 2510.10959) controller: lambda_q = alpha_k * w(p_q).

docs/algorithms.md#aer; the whole controller is a reconstruction, labelled [C] there (no public
code or method section was available). Must not import ray, vllm or deepspeed.

Order (docs/algorithms.md#entropy-controller): observe() at step k uses alpha_k and step-k rewards;
record_learner_stats() with step-k's pre-update entropy H_k freezes H_0 (first ``warmup_batches``
measurements) and sets alpha_{k+1} = clip(alpha_k + eta * (H* - H_k), 0, alpha_max), H* = tau * H_0.
Choices made here [C]:
  * H_k's population (``entropy_population``): ``all`` (default) = the token mean over every trained
    token of the step (``entropy/token_mean``); ``regularised`` = the token mean over the tokens of
    the prompts this step's observe() regularised, i.e. with w(p_q) > 0 whatever alpha_k is (so the
    set is defined while alpha = 0). H_0 is averaged over the same population, so H* and H_k compare
    like with like. A step with no token of a regularised prompt measures nothing: alpha and the H_0
    warm-up are held. Both means are logged every step (aer/entropy_all, aer/entropy_regularised).
  * While H_0 is still being averaged (warmup_batches > 1) alpha is held; the first update uses the
    measurement that completes H_0.
  * Log-space update (``update="log"``): alpha <- alpha * exp(eta * (H* - H_k)). alpha = 0 has no
    logarithm, so a positive step restarts from LOG_FLOOR_FRACTION * alpha_max, and a value that
    falls below that floor snaps to 0 (so alpha can still reach 0 as in the additive rule).
    ``eta`` is then in log-units per nat, not coefficient-units per nat.
"""
from __future__ import annotations

import math
import typing
from typing import Collection, Optional

from rlsys.config import AEREntropyPopulation, EntropyControlConfig
from rlsys.control.base import PlainStateMixin, group_accuracy, make_directives, measured_token_entropy
from rlsys.types import ControlDirectives, LearnerStats, PromptStats

LOG_FLOOR_FRACTION = 1e-3  # log-space restart point / cut-off, as a fraction of alpha_max
ENTROPY_POPULATIONS = typing.get_args(AEREntropyPopulation)  # the tokens H_0 and H_k average over: all | regularised


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


def population_token_entropy(stats: LearnerStats, prompt_ids: Collection[str]) -> Optional[float]:
    """Token-mean exact entropy over the trained samples whose prompt is in ``prompt_ids``
    (sum_i e_i n_i / sum_i n_i); None when they hold no token. Needs ``stats.prompt_id_per_sample``."""
    if len(stats.prompt_id_per_sample) != len(stats.sample_index):
        raise ValueError(f"LearnerStats.prompt_id_per_sample has {len(stats.prompt_id_per_sample)} entries for "
                         f"{len(stats.sample_index)} samples; the driver must attach each sample's prompt id")
    total = tokens = 0.0
    for pid, e, n in zip(stats.prompt_id_per_sample, stats.entropy_token_mean_per_sample,
                         stats.num_tokens_per_sample):
        if pid in prompt_ids and n > 0:
            total, tokens = total + e * n, tokens + n
    return total / tokens if tokens > 0 else None


class AERController(PlainStateMixin):
    """Difficulty-aware per-prompt coefficients with an initial-anchored target (docs/algorithms.md#aer)."""

    name = "aer"
    _STATE_FIELDS = ("alpha", "h0", "warmup_sum", "warmup_count", "last_entropy", "step",
                     "learner_steps", "entropy_population", "last_entropy_all", "last_entropy_regularised")

    def __init__(self, cfg: EntropyControlConfig) -> None:
        self.tau, self.rho, self.weight = cfg.aer_tau, cfg.aer_rho, cfg.aer_weight
        self.lr, self.alpha_max, self.update = cfg.aer_alpha_lr, cfg.aer_alpha_max, cfg.aer_update
        self.warmup_batches = max(1, cfg.aer_warmup_batches)
        difficulty_weight(0.0, self.weight, self.rho)  # fail fast on a bad rule name
        if cfg.aer_entropy_population not in ENTROPY_POPULATIONS:
            raise ValueError(f"aer_entropy_population={cfg.aer_entropy_population!r}: expected all | regularised")
        self.entropy_population = cfg.aer_entropy_population
        self.alpha = min(max(float(cfg.aer_alpha_init), 0.0), self.alpha_max)  # alpha_k
        self.h0: Optional[float] = None  # frozen once warmup_count reaches warmup_batches
        self.warmup_sum = 0.0
        self.warmup_count = 0
        self.last_entropy: Optional[float] = None  # H_{k-1} of the population, for the logged error
        self.last_entropy_all: Optional[float] = None  # both populations' H_{k-1}, for the logs
        self.last_entropy_regularised: Optional[float] = None
        self.step = 0
        self.learner_steps = 0
        self.regularised: frozenset[str] = frozenset()  # prompts with w > 0 at the last observe (not state:
        # it lives from observe() to record_learner_stats() of one step; checkpoints fall between steps)

    @property
    def target(self) -> Optional[float]:
        """H* = tau * H_0, None until H_0 is known."""
        return None if self.h0 is None else self.tau * self.h0

    def observe(self, stats: list[PromptStats], policy_version: int) -> ControlDirectives:
        self.step += 1
        w_P = [difficulty_weight(group_accuracy(s), self.weight, self.rho) for s in stats]
        self.regularised = frozenset(s.prompt_id for s, w in zip(stats, w_P) if w > 0)
        g = self._globals() | {"aer/regularised_prompts": float(len(self.regularised))}
        return make_directives(stats, policy_version, [self.alpha * w for w in w_P], globals=g)

    def _globals(self) -> dict[str, float]:
        g = {"coef_global": self.alpha}
        if self.h0 is not None:
            g["entropy_initial"] = self.h0
            g["entropy_target"] = self.tau * self.h0
            if self.last_entropy is not None:
                g["entropy_error"] = self.tau * self.h0 - self.last_entropy
        for key, value in (("aer/entropy_all", self.last_entropy_all),
                           ("aer/entropy_regularised", self.last_entropy_regularised)):
            if value is not None:
                g[key] = value
        return g

    def record_learner_stats(self, stats: LearnerStats) -> None:
        self.last_entropy_all = measured_token_entropy(stats)
        self.last_entropy_regularised = (population_token_entropy(stats, self.regularised)
                                         if self.entropy_population == "regularised" or stats.prompt_id_per_sample
                                         else None)
        self.learner_steps += 1
        entropy = self.last_entropy_all if self.entropy_population == "all" else self.last_entropy_regularised
        if entropy is None:  # no token of a regularised prompt this step: nothing measured, hold alpha and H_0
            return
        if self.h0 is None:
            self.warmup_sum += entropy
            self.warmup_count += 1
            if self.warmup_count >= self.warmup_batches:
                self.h0 = self.warmup_sum / self.warmup_count
        if self.h0 is not None:
            error = self.tau * self.h0 - entropy
            self.alpha = next_alpha(self.alpha, error, self.lr, self.alpha_max, self.update)
        self.last_entropy = entropy

    def load_state_dict(self, state: dict) -> None:
        """Also loads checkpoints written before ``entropy_population`` existed (they measured ``all``);
        refuses a state measured over the other population (its H_0 is not this run's)."""
        state = {"entropy_population": "all", "last_entropy_all": None, "last_entropy_regularised": None, **state}
        if state.get("controller") == self.name and state["entropy_population"] != self.entropy_population:
            raise ValueError(f"aer state_dict measured entropy over {state['entropy_population']!r} tokens, this "
                             f"run over {self.entropy_population!r} (entropy_control.aer_entropy_population)")
        super().load_state_dict(state)
