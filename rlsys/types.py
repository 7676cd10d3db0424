"""Records passed between the stages of one training step.

One record type per stage boundary, each carrying the ``policy_version`` it was produced with:
``PromptBatch -> RolloutBatch -> ScoredBatch -> (PromptStats -> ControlDirectives) -> TrainBatch
-> LearnerStats`` (a list of PromptStats goes to the controller with the version beside it, as
``PromptStatsColumns`` across the actor boundary). Pure data:
imports torch only for the tensors of ``TrainBatch``; never ray, vllm or deepspeed.
"""
from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Optional, Sequence

if TYPE_CHECKING:  # records are built in grading workers too: keep torch out of their import
    import numpy as np
    import torch

# The one definition of "correct" (docs/algorithms.md#notation): a verifier score >= CORRECT_THRESHOLD;
# an ungradable answer (score None) is wrong. GroupStats.n_correct (so p_q), the metrics and AsymGRPO's
# default binarisation threshold (algo.asym_threshold) all use it. Here because every layer imports
# this module and it pulls in nothing heavy.
CORRECT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Prompt:
    """One task instance. ``token_ids`` is the tokenized, chat-templated ``text``."""

    prompt_id: str
    text: str
    token_ids: tuple[int, ...]
    reference: str
    verifier: str = "exact_match"
    difficulty: Optional[int] = None


@dataclass(frozen=True)
class PromptBatch:
    prompts: tuple[Prompt, ...]
    policy_version: int


@dataclass(frozen=True)
class SamplingRequest:
    """How many responses to draw for one prompt, at which temperature, and from which seed.

    ``seed`` fixes the request's samples (vLLM gives its n samples seeds seed+0..n-1); the driver
    derives it from what the request is for (``rlsys.orchestration.stages.SeedScope``), so a
    sample never depends on which engine served it or how many calls that engine served before.
    """

    prompt: Prompt
    n: int
    temperature: float
    seed: int
    source: str = "regular"  # "regular" (HORA's second pass too) | "explore" (UEC-RL's second pass)


@dataclass(frozen=True)
class Sample:
    """One generated response, as the rollout engine produced it."""

    prompt_id: str
    prompt_token_ids: tuple[int, ...]
    response_token_ids: tuple[int, ...]
    response_logprobs: tuple[float, ...]  # vLLM log-prob of each sampled token, at `temperature`
    response_text: str
    finish_reason: str  # "stop" | "length"
    temperature: float
    source: str  # "regular" | "explore"
    policy_version: int
    worker_index: int = 0

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass(frozen=True)
class RolloutBatch:
    prompts: tuple[Prompt, ...]
    samples: tuple[Sample, ...]
    policy_version: int
    generate_seconds: float = 0.0


@dataclass(frozen=True)
class VerifyResult:
    """Verifier contract: ``score`` in [0, 1], or None when the answer cannot be graded."""

    score: Optional[float]
    parsed: Optional[str]
    reason: str
    guard_rejected: bool = False  # graded 0 (or None, for a reference) by a static cost check, never reached sympy


@dataclass(frozen=True)
class GroupStats:
    """Reward statistics of the samples of one prompt (ungradable samples count as 0)."""

    prompt_id: str
    n: int
    n_correct: int
    mean: float
    std: float  # population std of the scores


@dataclass(frozen=True)
class ScoredBatch:
    rollout: RolloutBatch
    results: tuple[VerifyResult, ...]  # aligned with rollout.samples
    groups: tuple[GroupStats, ...]  # one per prompt id present in rollout.samples
    policy_version: int
    grade_seconds: float = 0.0
    timeout_count: int = 0

    @property
    def rewards(self) -> list[float]:
        return [0.0 if r.score is None else float(r.score) for r in self.results]


@dataclass(frozen=True)
class PromptStats:
    """What the entropy controller sees of one prompt's regular pass (docs/algorithms.md#directives):
    its accuracy p_q = n_correct / n_samples, all that any controller reads."""

    prompt_id: str
    n_samples: int
    n_correct: int


@dataclass(frozen=True)
class PromptStatsColumns:
    """A step's PromptStats as columns: the form they cross to the controller actor in. Ray pickles a
    list element by element; a tuple of ids and two int64 arrays go in one piece, about 20x faster at
    10,000 prompts (benchmarks/bench_controller.py)."""

    prompt_ids: tuple[str, ...]
    n_samples_P: "np.ndarray"  # int64 [P]
    n_correct_P: "np.ndarray"  # int64 [P]

    @classmethod
    def of(cls, stats: Sequence[PromptStats]) -> "PromptStatsColumns":
        import numpy as np

        return cls(tuple(s.prompt_id for s in stats), np.fromiter((s.n_samples for s in stats), np.int64, len(stats)),
                   np.fromiter((s.n_correct for s in stats), np.int64, len(stats)))

    def to_list(self) -> list[PromptStats]:
        return [PromptStats(pid, n, c) for pid, n, c in zip(self.prompt_ids, self.n_samples_P.tolist(),
                                                             self.n_correct_P.tolist(), strict=True)]


KeepKind = Literal["all", "nonzero_adv", "positive_only", "nonnegative", "abs_gt"]
AdmitKind = Literal["none", "positive_gt", "abs_gt"]
THRESHOLD_KINDS = ("abs_gt", "positive_gt")  # the kinds that compare A with ``threshold``


def _check_rule(rule, kinds: tuple[str, ...]) -> None:
    if rule.kind not in kinds:
        raise ValueError(f"{type(rule).__name__} kind {rule.kind!r}: must be one of {kinds}")
    if not math.isfinite(rule.threshold):
        raise ValueError(f"{type(rule).__name__}({rule.kind!r}) threshold {rule.threshold!r}: must be finite")
    if rule.kind not in THRESHOLD_KINDS and rule.threshold != 0.0:
        raise ValueError(f"{type(rule).__name__}({rule.kind!r}) takes no threshold (got {rule.threshold!r})")


@dataclass(frozen=True)
class KeepRule:
    """Which samples of one pass enter the loss (docs/algorithms.md#directives): ``all``,
    ``nonzero_adv`` (A != 0), ``positive_only`` (A > 0), ``nonnegative`` (A >= 0), ``abs_gt``
    (|A| > threshold). The masks are ``rlsys.algo.shaping.keep_mask``."""

    kind: KeepKind = "all"
    threshold: float = 0.0  # X of abs_gt; 0 for the other kinds

    def __post_init__(self) -> None:
        _check_rule(self, typing.get_args(KeepKind))


@dataclass(frozen=True)
class AdmitRule:
    """Which trained samples enter UEC-RL's replay buffer (docs/algorithms.md#directives): ``none``,
    ``positive_gt`` (A > threshold), ``abs_gt`` (|A| > threshold). The masks are
    ``rlsys.algo.shaping.replay_admit_mask``."""

    kind: AdmitKind = "none"
    threshold: float = 0.0

    def __post_init__(self) -> None:
        _check_rule(self, typing.get_args(AdmitKind))


@dataclass(frozen=True)
class ControlDirectives:
    """Per-prompt decisions of the entropy controller for one step (docs/algorithms.md#directives).

    All per-prompt tuples are aligned with ``prompt_ids``.
    """

    policy_version: int
    prompt_ids: tuple[str, ...]
    entropy_coef: tuple[float, ...]  # lambda_q, applied to every token of the prompt's samples
    extra_samples: tuple[int, ...] = ()  # second-pass samples per prompt, UEC-RL or HORA (empty = none)
    temperature: tuple[float, ...] = ()  # second-pass temperature per prompt
    # True (HORA): the second-pass samples join their prompt's regular group (source "regular", one group
    # per prompt); False (UEC-RL): they form their own "explore" group.
    extra_joins_group: bool = False
    extra_budget: int = 0  # HORA: second-pass samples the controller could allocate this step (>= sum extra_samples)
    keep_rule_regular: KeepRule = KeepRule()  # which regular-pass samples enter the loss
    keep_rule_explore: KeepRule = KeepRule()  # which exploration samples enter the loss
    drop_overlong_positive: bool = False  # also drop truncated samples with A > 0 (UEC-RL code-compat)
    explore_score_temperature: Optional[float] = None  # learner's temperature for explore samples; None: drawn at
    replay_admit_rule: AdmitRule = AdmitRule()  # which trained samples enter the replay buffer
    replay_learner_logprobs: bool = False  # replay with the learner's old log-probs of the first training pass
    replay_now: bool = False
    globals: dict[str, float] = field(default_factory=dict)  # e.g. coef_global, entropy_target


@dataclass
class TrainBatch:
    """Padded tensors for the learner. B samples, T = prompt + response positions.

    ``mask_BT`` marks response tokens that the loss trains on; ``logp``/``entropy`` at position t
    are those of token t+1 predicted from positions <= t, already shifted so they align with
    ``input_ids_BT[:, 1:]`` laid out as [B, T-1]. Global counts make the loss reduction
    sharding-invariant.
    """

    input_ids_BT: torch.Tensor  # long [B, T]
    attention_mask_BT: torch.Tensor  # long [B, T]
    loss_mask_BT: torch.Tensor  # float [B, T-1], 1 on response tokens
    old_logp_BT: Optional[torch.Tensor]  # float [B, T-1] behaviour log-probs, None -> learner recomputes
    adv_B: torch.Tensor  # float [B]
    entropy_coef_B: torch.Tensor  # float [B], lambda of each sample's prompt
    temperature_B: torch.Tensor  # float [B], temperature the logits are divided by
    sample_index_B: torch.Tensor  # long [B], index into the ScoredBatch samples (for stats)
    policy_version: int
    global_num_tokens: int = 0
    global_num_seqs: int = 0
    is_replay: bool = False

    @property
    def batch_size(self) -> int:
        return int(self.input_ids_BT.shape[0])

    def select(self, index_b: torch.Tensor) -> "TrainBatch":
        """Rows ``index_b`` of every per-sample tensor; global counts are kept."""
        def pick(t):
            return None if t is None else t[index_b]

        return TrainBatch(
            input_ids_BT=pick(self.input_ids_BT), attention_mask_BT=pick(self.attention_mask_BT),
            loss_mask_BT=pick(self.loss_mask_BT), old_logp_BT=pick(self.old_logp_BT),
            adv_B=pick(self.adv_B), entropy_coef_B=pick(self.entropy_coef_B),
            temperature_B=pick(self.temperature_B), sample_index_B=pick(self.sample_index_B),
            policy_version=self.policy_version, global_num_tokens=self.global_num_tokens,
            global_num_seqs=self.global_num_seqs, is_replay=self.is_replay,
        )


ENTROPY_TOKEN_MEAN_KEY = "entropy/token_mean"  # the learner's scalar behind LearnerStats.entropy_token_mean


@dataclass(frozen=True)
class LearnerStats:
    """What one learner step reports. ``policy_version`` is the version *after* the update.

    Per-sample vectors are aligned with the TrainBatch's ``sample_index_B`` (gathered over ranks).
    """

    policy_version: int
    scalars: dict[str, float]  # learner/* and entropy/* metrics, global over ranks
    sample_index: tuple[int, ...]
    entropy_token_mean_per_sample: tuple[float, ...]  # exact entropy, pre-update policy
    num_tokens_per_sample: tuple[int, ...]
    old_logp_per_sample: tuple[tuple[float, ...], ...] = ()  # stored for replay (UEC-RL)
    # The prompt of each sample, aligned with sample_index. The learner does not know prompts: the driver
    # attaches these before the controller sees the stats (AER's entropy over its regularised prompts).
    prompt_id_per_sample: tuple[str, ...] = ()

    @property
    def entropy_token_mean(self) -> Optional[float]:
        """What the entropy-driven controllers act on: the exact token-mean entropy of the pre-update
        policy over the trained batch (``entropy/token_mean``); None when the learner reported none."""
        return self.scalars.get(ENTROPY_TOKEN_MEAN_KEY)
