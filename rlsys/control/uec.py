"""UEC-RL (Unified Entropy Control, arXiv 2604.14646) controller: sampling and replay directives.

UEC-RL puts no entropy term in the loss (all lambda = 0). It raises entropy by a second,
hotter sampling pass on prompts no sample solved, and lowers it by replaying high-advantage
samples (docs/algorithms.md#uec_rl). This module only decides; the keep/admit masks are computed by
``rlsys.algo.shaping`` from the typed rules (``KeepRule``, ``AdmitRule``) emitted here. Must not import
ray, vllm or deepspeed.

Paper vs code (docs/algorithms.md#uec_rl), selected by ``uec_code_compat``:
  rule                         paper (default)                  authors' code
  keep regular                 nonzero_adv                      abs_gt 0.05
  keep explore                 positive_only | nonnegative [C]  abs_gt A_0   (A_0 = uec_adv_threshold, 1 in the code)
                               (uec_explore_keep)
  replay admission             positive_gt A_0                  abs_gt A_0
  truncated samples with A > 0 kept                             dropped (drop_overlong_positive)
  learner's temperature for    T' (drawn at)                    T, the regular one (explore_score_temperature)
  exploration samples
  replay's old log-probs       vLLM's, from sampling            the learner's, from the first training pass
                                                                (replay_learner_logprobs)
The hard-coded upper clip of the code is not reproduced (``algo.eps_high`` applies). The batch
buffer (``uec_batch_buffer``) is a driver stage, not a directive: rlsys/orchestration/batching.py asks
``UECController.uses_batch_buffer``; the replay buffer's size is ``UECController.replay_capacity``.
``replay_now`` counts training steps (observe() calls, 0-based): step k > 0 with
k % uec_replay_every == 0. The replay stage (rlsys/orchestration/sampling.py) still checks the buffer
holds >= P*G items.
"""
from __future__ import annotations

from rlsys.config import EntropyControlConfig
from rlsys.control.base import PlainStateMixin, make_directives
from rlsys.types import AdmitRule, ControlDirectives, KeepRule, LearnerStats, PromptStats

CODE_COMPAT_REGULAR_ABS_THRESHOLD = 0.05  # EFRame @173b698: regular samples kept iff |A| > 0.05


EXPLORE_KEEP_RULES = {"positive": KeepRule("positive_only"), "nonnegative": KeepRule("nonnegative")}  # uec_explore_keep


def uec_rules(code_compat: bool, adv_threshold: float,
              explore_keep: str = "positive") -> tuple[KeepRule, KeepRule, AdmitRule]:
    """(keep_rule_regular, keep_rule_explore, replay_admit_rule) of the paper or of the authors' code.

    ``explore_keep`` (uec_explore_keep) picks the paper's exploration rule; code-compat replaces it."""
    a0 = float(adv_threshold)
    if code_compat:
        return KeepRule("abs_gt", CODE_COMPAT_REGULAR_ABS_THRESHOLD), KeepRule("abs_gt", a0), AdmitRule("abs_gt", a0)
    return KeepRule("nonzero_adv"), EXPLORE_KEEP_RULES[explore_keep], AdmitRule("positive_gt", a0)


class UECController(PlainStateMixin):
    """A prompt with n_correct == 0 gets ``extra_samples`` = G' at temperature T'; others get 0 at
    the regular temperature. Every ``replay_every`` steps it asks for a replay update."""

    name = "uec_rl"
    _STATE_FIELDS = ("step", "learner_steps")

    @classmethod
    def from_config(cls, cfg: EntropyControlConfig, samples_per_prompt: int, prompts_per_step: int,
                    regular_temperature: float) -> "UECController":
        return cls(cfg, regular_temperature)

    @classmethod
    def replay_capacity(cls, cfg: EntropyControlConfig, unit: int) -> int:
        """s' = floor(uec_replay_size * P * G) samples."""
        return int(cfg.uec_replay_size * unit)

    @classmethod
    def uses_batch_buffer(cls, cfg: EntropyControlConfig) -> bool:
        return cfg.uec_batch_buffer

    def __init__(self, cfg: EntropyControlConfig, regular_temperature: float = 1.0) -> None:
        self.extra_n, self.extra_temperature = int(cfg.uec_extra_samples), float(cfg.uec_extra_temperature)
        self.regular_temperature = float(regular_temperature)
        self.replay_every = int(cfg.uec_replay_every)
        self.rules = uec_rules(cfg.uec_code_compat, cfg.uec_adv_threshold, cfg.uec_explore_keep)
        self.code_compat = bool(cfg.uec_code_compat)
        self.step = 0  # index of the next training step
        self.learner_steps = 0

    def replay_due(self, step: int) -> bool:
        """Whether step ``step`` (0-based) is a replay step; never when replay_every = 0."""
        return self.replay_every > 0 and step > 0 and step % self.replay_every == 0

    def observe(self, stats: list[PromptStats], policy_version: int) -> ControlDirectives:
        hard = [s.n_correct == 0 and self.extra_n > 0 for s in stats]
        regular, explore, admit = self.rules
        directives = make_directives(
            stats, policy_version,
            extra_samples=tuple(self.extra_n if h else 0 for h in hard),
            temperature=tuple(self.extra_temperature if h else self.regular_temperature for h in hard),
            keep_rule_regular=regular, keep_rule_explore=explore, replay_admit_rule=admit,
            replay_now=self.replay_due(self.step),
            drop_overlong_positive=self.code_compat, replay_learner_logprobs=self.code_compat,
            explore_score_temperature=self.regular_temperature if self.code_compat else None,
        )
        self.step += 1
        return directives

    def record_learner_stats(self, stats: LearnerStats) -> None:
        self.learner_steps += 1  # UEC-RL needs no entropy measurement to act
