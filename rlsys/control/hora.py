"""HORA (Hit-Utility Optimal Rollout Allocation, arXiv 2605.07114) controller: per-prompt second-pass sizes.

The regular pass is HORA's probe (``hora_n_probe`` responses per prompt, drawn by the driver, which
asks ``HORAController.regular_samples_per_prompt``). From each
prompt's probe result (n, s) this controller spreads the step's budget of extra responses over the
prompts with ``rlsys.algo.hora.greedy_allocate`` and the utility ``hora_utility`` names, at most
``hora_max_per_prompt`` per prompt. The extra responses are drawn at the regular temperature and join
their prompt's group (``extra_joins_group``), so reward and advantages are GRPO's on one group of
n + m_q samples per prompt. All lambda = 0. docs/algorithms.md#hora. Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

from rlsys.algo.hora import HORA_UTILITIES, greedy_allocate
from rlsys.config import EntropyControlConfig
from rlsys.control.base import PlainStateMixin, make_directives
from rlsys.types import ControlDirectives, LearnerStats, PromptStats


def hora_budget(cfg: EntropyControlConfig, samples_per_prompt: int, prompts_per_step: int) -> int:
    """Extra responses per step: ``hora_budget``, or P * (G - n_probe) when unset, so that probe plus
    extra responses total the P * G of a GRPO run with the same rollout settings (compute-matched)."""
    if cfg.hora_budget is not None:
        return cfg.hora_budget
    return prompts_per_step * (samples_per_prompt - cfg.hora_n_probe)


class HORAController(PlainStateMixin):
    """Allocates ``budget`` extra responses over the step's prompts from their probe results."""

    name = "hora"
    _STATE_FIELDS = ("step",)  # the allocation depends on this step's probe only

    @classmethod
    def from_config(cls, cfg: EntropyControlConfig, samples_per_prompt: int, prompts_per_step: int,
                    regular_temperature: float) -> "HORAController":
        return cls(cfg, samples_per_prompt, prompts_per_step, regular_temperature)

    @classmethod
    def regular_samples_per_prompt(cls, cfg: EntropyControlConfig, samples_per_prompt: int) -> int:
        """The regular pass is the probe: ``hora_n_probe`` responses per prompt, not G."""
        return cfg.hora_n_probe

    def __init__(self, cfg: EntropyControlConfig, samples_per_prompt: int, prompts_per_step: int,
                 regular_temperature: float = 1.0) -> None:
        self.budget = hora_budget(cfg, samples_per_prompt, prompts_per_step)
        self.max_per_prompt = cfg.hora_max_per_prompt
        self.utility = HORA_UTILITIES[cfg.hora_utility]
        self.temperature = float(regular_temperature)
        self.step = 0  # observe() calls so far

    def allocate(self, stats: list[PromptStats]) -> list[int]:
        """Extra responses m_q per prompt (stats order) from the probe counts n_q, s_q."""
        return greedy_allocate([s.n_samples for s in stats], [s.n_correct for s in stats], self.budget,
                               self.max_per_prompt, self.utility)

    def observe(self, stats: list[PromptStats], policy_version: int) -> ControlDirectives:
        self.step += 1
        return make_directives(stats, policy_version, extra_samples=tuple(self.allocate(stats)),
                               temperature=(self.temperature,) * len(stats), extra_joins_group=True,
                               extra_budget=self.budget)

    def record_learner_stats(self, stats: LearnerStats) -> None:
        return None  # HORA is learning-free: nothing to update
