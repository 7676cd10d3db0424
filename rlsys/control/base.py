"""The entropy-controller contract (docs/algorithms.md#entropy-controller) and the helpers every
controller shares.

A controller is a small state machine: ``observe`` turns per-prompt statistics into per-prompt
directives before the learner step, ``record_learner_stats`` updates its state after it.
Plain python state only, so ``state_dict`` round-trips through any checkpoint format.
Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional, Protocol, Sequence, runtime_checkable

from rlsys.types import ControlDirectives, LearnerStats, PromptStats

# The one scalar every entropy-driven controller acts on: exact token-mean entropy of the
# pre-update policy on this step's rollouts, reported by the learner's old-logprob pass.
LEARNER_ENTROPY_KEY = "entropy/token_mean"


@runtime_checkable
class EntropyController(Protocol):
    """Call order per training step k: ``observe`` (step-k rewards, state k) -> learner step ->
    ``record_learner_stats`` (step-k entropy -> state k+1)."""

    name: str

    def observe(self, stats: list[PromptStats], policy_version: int) -> ControlDirectives: ...

    def record_learner_stats(self, stats: LearnerStats) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class PlainStateMixin:
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
    """The exact token-mean entropy of the learner step (``entropy/token_mean``); raises if absent.

    Entropy-driven controllers must always get this value, also while their coefficient is 0
    (docs/algorithms.md#entropy-controller: gating the measurement on ``coef != 0`` gets the
    controller stuck).
    """
    value = stats.scalars.get(LEARNER_ENTROPY_KEY)
    if value is None or not math.isfinite(float(value)):
        raise ValueError(f"LearnerStats.scalars[{LEARNER_ENTROPY_KEY!r}] is missing or not finite "
                         f"({value!r}); the learner must always report the exact entropy")
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


def format_threshold(x: float) -> str:
    """Shortest round-tripping text of a threshold in a rule string: 1.0 -> "1", 0.05 -> "0.05"."""
    return format(float(x), "g") if float(format(float(x), "g")) == float(x) else repr(float(x))
