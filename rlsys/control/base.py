"""The entropy-controller contract (docs/algorithms.md#entropy-controller) and the helpers every
controller shares.

A controller is a small state machine: ``observe`` turns per-prompt statistics into per-prompt
directives before the learner step, ``record_learner_stats`` updates its state after it.
Plain python state only, so ``state_dict`` round-trips through any checkpoint format. Its class also
answers, before any instance exists, what the driver must size for it (``ControllerSizing``).
Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional, Protocol, Sequence, runtime_checkable

from rlsys.config import EntropyControlConfig
from rlsys.types import ENTROPY_TOKEN_MEAN_KEY, ControlDirectives, LearnerStats, PromptStats

# The one scalar every entropy-driven controller acts on: exact token-mean entropy of the
# pre-update policy on this step's rollouts (LearnerStats.entropy_token_mean).
LEARNER_ENTROPY_KEY = ENTROPY_TOKEN_MEAN_KEY


@runtime_checkable
class EntropyController(Protocol):
    """Call order per training step k: ``observe`` (step-k rewards, state k) -> learner step ->
    ``record_learner_stats`` (step-k entropy -> state k+1)."""

    name: str

    @classmethod
    def from_config(cls, cfg: EntropyControlConfig, samples_per_prompt: int, prompts_per_step: int,
                    regular_temperature: float) -> "EntropyController": ...

    @classmethod
    def regular_samples_per_prompt(cls, cfg: EntropyControlConfig, samples_per_prompt: int) -> int: ...

    @classmethod
    def replay_capacity(cls, cfg: EntropyControlConfig, unit: int) -> int: ...

    @classmethod
    def uses_batch_buffer(cls, cfg: EntropyControlConfig) -> bool: ...

    def observe(self, stats: list[PromptStats], policy_version: int) -> ControlDirectives: ...

    def record_learner_stats(self, stats: LearnerStats) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class ControllerSizing:
    """What the driver sizes for a controller, asked of its class (``CONTROLLERS[name]``) before the
    controller exists. The defaults are those of a controller that draws G responses per prompt and
    has neither replay nor batch buffer; UEC-RL and HORA override theirs."""

    @classmethod
    def from_config(cls, cfg: EntropyControlConfig, samples_per_prompt: int, prompts_per_step: int,
                    regular_temperature: float):
        """The controller for ``cfg`` (default: built from its config section alone)."""
        return cls(cfg)

    @classmethod
    def regular_samples_per_prompt(cls, cfg: EntropyControlConfig, samples_per_prompt: int) -> int:
        """Responses per prompt of the regular pass (default: G = ``samples_per_prompt``)."""
        return samples_per_prompt

    @classmethod
    def replay_capacity(cls, cfg: EntropyControlConfig, unit: int) -> int:
        """Samples the replay buffer holds, ``unit`` = P * G (default: 0, no replay)."""
        return 0

    @classmethod
    def uses_batch_buffer(cls, cfg: EntropyControlConfig) -> bool:
        """Whether kept samples wait in a batch buffer for whole multiples of P * G (default: no)."""
        return False


class PlainStateMixin(ControllerSizing):
    """``state_dict`` = the attributes named in ``_STATE_FIELDS`` (plain python values).

    ``load_state_dict`` refuses a state written by a different controller, so a checkpoint of one
    method cannot silently resume another.
    """

    name: str = "base"
    _STATE_FIELDS: tuple[str, ...] = ()

    def state_dict(self) -> dict:
        return {"controller": self.name, **{f: getattr(self, f) for f in self._STATE_FIELDS}}

    def load_state_dict(self, state: dict) -> None:
        if state.get("controller") != self.name:
            raise ValueError(f"state_dict is for controller {state.get('controller')!r}, not {self.name!r}")
        missing = [f for f in self._STATE_FIELDS if f not in state]
        if missing:
            raise ValueError(f"{self.name} state_dict lacks {missing}")
        for f in self._STATE_FIELDS:
            setattr(self, f, state[f])


def group_accuracy(stats: PromptStats) -> float:
    """p_q = n_correct / n_samples (0 for a prompt without samples)."""
    return stats.n_correct / stats.n_samples if stats.n_samples > 0 else 0.0


def measured_token_entropy(stats: LearnerStats) -> float:
    """The exact token-mean entropy of the learner step (``stats.entropy_token_mean``); raises if absent.

    Entropy-driven controllers must always get this value, also while their coefficient is 0
    (docs/algorithms.md#entropy-controller: gating the measurement on ``coef != 0`` gets the
    controller stuck).
    """
    value = stats.entropy_token_mean
    if value is None or not math.isfinite(float(value)):
        raise ValueError(f"LearnerStats.entropy_token_mean (scalar {LEARNER_ENTROPY_KEY!r}) is missing or not "
                         f"finite ({value!r}); the learner must always report the exact entropy")
    return float(value)


def make_directives(stats: Sequence[PromptStats], policy_version: int,
                    coef_P: Optional[Iterable[float]] = None, **fields) -> ControlDirectives:
    """Directives aligned with ``stats`` order; ``coef_P`` None means all zero."""
    prompt_ids = tuple(s.prompt_id for s in stats)
    coefs = tuple(float(c) for c in coef_P) if coef_P is not None else (0.0,) * len(prompt_ids)
    if len(coefs) != len(prompt_ids):
        raise ValueError(f"{len(coefs)} coefficients for {len(prompt_ids)} prompts")
    return ControlDirectives(policy_version=policy_version, prompt_ids=prompt_ids,
                             entropy_coef=coefs, **fields)
