"""Baseline controllers: none, fixed coefficient, Skywork-OR1 adaptive, and AsymGRPO's logger-only one.

docs/algorithms.md#entropy_fixed, #skywork, #asymgrpo (AsymGRPO acts through advantages, so its controller
emits no directives; the run still logs entropy split by outcome from the learner stats).
Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

from typing import Optional

from rlsys.config import EntropyControlConfig
from rlsys.control.base import PlainStateMixin, make_directives, measured_token_entropy
from rlsys.types import ControlDirectives, LearnerStats, PromptStats


class NoneController(PlainStateMixin):
    """lambda = 0 on every prompt and no directives: the run is plain GRPO/DAPO."""

    name = "none"
    _STATE_FIELDS = ("step",)

    @classmethod
    def from_config(cls, cfg: EntropyControlConfig, samples_per_prompt: int, prompts_per_step: int,
                    regular_temperature: float) -> "NoneController":
        return cls()

    def __init__(self) -> None:
        self.step = 0  # observe() calls so far

    def observe(self, stats: list[PromptStats], policy_version: int) -> ControlDirectives:
        self.step += 1
        return make_directives(stats, policy_version)

    def record_learner_stats(self, stats: LearnerStats) -> None:
        return None


class AsymGRPOController(NoneController):
    """Same directives as ``none``: AsymGRPO changes the advantages (rlsys/algo), not lambda."""

    name = "asymgrpo"


class FixedController(PlainStateMixin):
    """lambda = ``coef`` on every prompt, every step (docs/algorithms.md#entropy_fixed)."""

    name = "fixed"
    _STATE_FIELDS = ("step",)

    @classmethod
    def from_config(cls, cfg: EntropyControlConfig, samples_per_prompt: int, prompts_per_step: int,
                    regular_temperature: float) -> "FixedController":
        return cls(cfg.coef)

    def __init__(self, coef: float) -> None:
        self.coef = float(coef)
        self.step = 0

    def observe(self, stats: list[PromptStats], policy_version: int) -> ControlDirectives:
        self.step += 1
        return make_directives(stats, policy_version, [self.coef] * len(stats),
                               globals={"coef_global": self.coef})

    def record_learner_stats(self, stats: LearnerStats) -> None:
        return None


class SkyworkController(PlainStateMixin):
    """Skywork-OR1 adaptive entropy control (docs/algorithms.md#skywork).

    Step k applies lambda_k = c_k * 1[H_{k-1} <= H_tgt] to every prompt. After step k,
    c_{k+1} = clamp(c_k + delta if H_k <= H_tgt else c_k - delta, c_min, c_max), with c_0 = ``coef``
    (clamped). At step 0 there is no previous measurement, so the gate is closed (lambda_0 = 0)
    [C: the descriptions leave step 0 open; the initial policy is normally above target anyway].
    The measured entropy drives the update also while lambda = 0.
    """

    name = "skywork"
    _STATE_FIELDS = ("coef_state", "last_entropy", "step", "learner_steps")

    @classmethod
    def from_config(cls, cfg: EntropyControlConfig, samples_per_prompt: int, prompts_per_step: int,
                    regular_temperature: float) -> "SkyworkController":
        return cls(cfg.coef, cfg.target_entropy, cfg.coef_step, cfg.coef_min, cfg.coef_max)

    def __init__(self, coef: float, target: float, coef_step: float, coef_min: float,
                 coef_max: float) -> None:
        self.target, self.delta = float(target), float(coef_step)
        self.coef_min, self.coef_max = float(coef_min), float(coef_max)
        self.coef_state = self._clamp(float(coef))  # c_k
        self.last_entropy: Optional[float] = None  # H_{k-1}
        self.step = 0
        self.learner_steps = 0

    def _clamp(self, c: float) -> float:
        return min(max(c, self.coef_min), self.coef_max)

    def applied_coef(self) -> float:
        """lambda for the next observe(): c_k while the last measured entropy is <= target, else 0."""
        gate_open = self.last_entropy is not None and self.last_entropy <= self.target
        return self.coef_state if gate_open else 0.0

    def observe(self, stats: list[PromptStats], policy_version: int) -> ControlDirectives:
        self.step += 1
        lam = self.applied_coef()
        g = {"coef_global": lam, "coef_adaptive": self.coef_state, "entropy_target": self.target}
        if self.last_entropy is not None:
            g["entropy_error"] = self.target - self.last_entropy
        return make_directives(stats, policy_version, [lam] * len(stats), globals=g)

    def record_learner_stats(self, stats: LearnerStats) -> None:
        entropy = measured_token_entropy(stats)
        step = self.delta if entropy <= self.target else -self.delta
        self.coef_state = self._clamp(self.coef_state + step)
        self.last_entropy = entropy
        self.learner_steps += 1
