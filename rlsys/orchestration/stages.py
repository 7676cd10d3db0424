"""The pieces of one training step that sit between the worker groups.

Each function takes records and returns records: sampling requests from prompts and directives,
per-prompt statistics for the controller, merging the exploration pass into the scored batch, and
evaluation (pass@1 / pass@k). No Ray calls here beyond the typed group methods passed in.
"""
from __future__ import annotations

import dataclasses
import hashlib
import statistics
from dataclasses import dataclass
from typing import Optional

from rlsys.metrics.compute import pass_at_k
from rlsys.types import (ControlDirectives, GroupStats, Prompt, PromptBatch, PromptStats, SamplingRequest,
                         ScoredBatch)


_SEED_MASK = 0x3FFF_FFFF  # < 2**30: the n samples of a request take seeds seed+0..n-1, all < 2**31


@dataclass(frozen=True)
class SeedScope:
    """What one generate call is for: ``purpose`` ("regular", "explore", "eval") at ``step`` (and
    ``round`` of DAPO's refill). Request i of the call samples from ``seed(i)``, a hash of the run's
    ``rollout.seed`` and this scope, so the same config gives the same samples step for step,
    whichever engine serves a request and however many calls it served before."""

    base: int
    purpose: str
    step: int
    round: int = 0

    def seed(self, index: int) -> int:
        key = f"{self.base}/{self.purpose}/{self.step}/{self.round}/{index}".encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & _SEED_MASK


def regular_requests(prompts: PromptBatch, samples_per_prompt: int, temperature: float,
                     scope: SeedScope) -> list[SamplingRequest]:
    return [SamplingRequest(prompt=p, n=samples_per_prompt, temperature=temperature, seed=scope.seed(i))
            for i, p in enumerate(prompts.prompts)]


def explore_requests(prompts: PromptBatch, directives: ControlDirectives, scope: SeedScope) -> list[SamplingRequest]:
    """The second pass: extra samples at the directive's temperature for the prompts it names (UEC-RL's
    exploration, source "explore"; HORA's allocation, source "regular" so they join the prompt's group)."""
    if not directives.extra_samples:
        return []
    by_id = {p.prompt_id: p for p in prompts.prompts}
    wanted = [(pid, n, t) for pid, n, t in zip(directives.prompt_ids, directives.extra_samples, directives.temperature)
              if n > 0 and pid in by_id]
    source = "regular" if directives.extra_joins_group else "explore"
    return [SamplingRequest(prompt=by_id[pid], n=n, temperature=t, seed=scope.seed(i), source=source)
            for i, (pid, n, t) in enumerate(wanted)]


def prompt_stats(scored: ScoredBatch) -> list[PromptStats]:
    """One PromptStats per group of the regular pass, in prompt order."""
    return [PromptStats(prompt_id=g.prompt_id, n_samples=g.n, n_correct=g.n_correct) for g in scored.groups]


def concat_scored(a: Optional[ScoredBatch], b: ScoredBatch) -> ScoredBatch:
    """``a`` followed by ``b``: prompts, samples, results, groups, timings and timeout counts."""
    if a is None:
        return b
    rollout = dataclasses.replace(a.rollout, prompts=a.rollout.prompts + b.rollout.prompts,
                                  samples=a.rollout.samples + b.rollout.samples,
                                  generate_seconds=a.rollout.generate_seconds + b.rollout.generate_seconds)
    return dataclasses.replace(a, rollout=rollout, results=a.results + b.results, groups=a.groups + b.groups,
                               grade_seconds=a.grade_seconds + b.grade_seconds,
                               timeout_count=a.timeout_count + b.timeout_count)


def merge_scored(regular: ScoredBatch, extra: Optional[ScoredBatch]) -> ScoredBatch:
    """Append the second pass's samples; prompts and group statistics stay those of the regular pass
    (for HORA: of the probe)."""
    if extra is None or not extra.rollout.samples:
        return regular
    both = concat_scored(regular, extra)
    return dataclasses.replace(both, groups=regular.groups,
                               rollout=dataclasses.replace(both.rollout, prompts=regular.rollout.prompts))


def eval_metrics(scored: ScoredBatch, k: int, temperature: float) -> dict[str, float]:
    """pass@1 (mean over the k samples) and unbiased pass@k, with the temperature they were drawn at."""
    groups: list[GroupStats] = list(scored.groups)
    if not groups:
        return {}
    pass1 = statistics.fmean(g.n_correct / g.n for g in groups)
    passk = statistics.fmean(pass_at_k(g.n, g.n_correct, k) for g in groups)
    return {"eval/pass@1": pass1, f"eval/pass@{k}": passk, "eval/temperature": temperature,
            "eval/num_prompts": float(len(groups))}


def difficulty_accuracy(scored: ScoredBatch) -> dict[str, float]:
    """Accuracy per difficulty level of the prompts (eval/accuracy_difficulty_<d>)."""
    level: dict[str, Optional[int]] = {p.prompt_id: p.difficulty for p in scored.rollout.prompts}
    sums: dict[int, list[float]] = {}
    for s, r in zip(scored.rollout.samples, scored.results):
        d = level.get(s.prompt_id)
        if d is not None:
            acc = sums.setdefault(d, [0.0, 0.0])
            acc[0] += 0.0 if r.score is None else r.score
            acc[1] += 1
    return {f"eval/accuracy_difficulty_{d}": s / n for d, (s, n) in sorted(sums.items())}


def eval_requests(prompts: list[Prompt], k: int, temperature: float, scope: SeedScope) -> list[SamplingRequest]:
    return [SamplingRequest(prompt=p, n=k, temperature=temperature, seed=scope.seed(i), source="regular")
            for i, p in enumerate(prompts)]
