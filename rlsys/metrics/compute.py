"""Pure metric functions (docs/algorithms.md#metrics): records and vectors in,
``{"namespace/name": float}`` out.

Each key names exactly what is computed. A statistic over an empty set (e.g. the mean entropy of
an empty difficulty bucket) is omitted rather than logged as NaN; counts are logged even when 0.
A sample is "correct" iff its verifier score is >= CORRECT_THRESHOLD (rlsys.types; ungradable = wrong).
Percentiles use linear interpolation (numpy's default). Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch

from rlsys.types import CORRECT_THRESHOLD, ControlDirectives, GroupStats, RolloutBatch, ScoredBatch

if TYPE_CHECKING:
    from rlsys.algo.advantages import GroupAdvantages

# Difficulty buckets of the group accuracy p (docs/algorithms.md#metrics), in order.
P_BUCKETS = ("p=0", "0<p<=.25", ".25<p<=.5", ".5<p<1", "p=1")
ZERO_ADV_TOL = 1e-8  # |A| below this counts as zero advantage (degenerate groups give exact 0)


def p_bucket(p: float) -> str:
    """The bucket label of group accuracy p in [0, 1]."""
    if p <= 0.0:
        return "p=0"
    if p >= 1.0:
        return "p=1"
    if p <= 0.25:
        return "0<p<=.25"
    return ".25<p<=.5" if p <= 0.5 else ".5<p<1"


def is_correct(score: Optional[float]) -> bool:
    return score is not None and score >= CORRECT_THRESHOLD


def reward_metrics(scored: ScoredBatch) -> dict[str, float]:
    """Regular-pass rewards (``scored.groups`` describe the regular pass; UEC-RL's exploration samples
    are left out): reward/mean (ungradable = 0), reward/ungradable_rate (score None, timeouts included),
    reward/verifier_timeout_rate (answers past the service's time limit, over all graded answers of both
    passes), reward/guard_rejected_rate (answers the math verifier's cost guard refused before sympy, over
    the same), reward/grading_seconds, reward/accuracy_mean
    (sum n_correct / sum n over groups), reward/frac_all_wrong, reward/frac_all_right,
    reward/frac_degenerate_groups (reward std < ZERO_ADV_TOL, i.e. zero GRPO advantage), and
    reward/p_hist/<bucket> prompt counts."""
    out: dict[str, float] = {}
    regular = [r for s, r in zip(scored.rollout.samples, scored.results) if s.source == "regular"]
    if regular:
        out["reward/mean"] = float(np.mean([0.0 if r.score is None else r.score for r in regular]))
        out["reward/ungradable_rate"] = sum(r.score is None for r in regular) / len(regular)
    if scored.results:
        out["reward/verifier_timeout_rate"] = scored.timeout_count / len(scored.results)
        out["reward/guard_rejected_rate"] = sum(r.guard_rejected for r in scored.results) / len(scored.results)
    out["reward/grading_seconds"] = float(scored.grade_seconds)
    groups = [g for g in scored.groups if g.n > 0]
    if groups:
        out["reward/accuracy_mean"] = sum(g.n_correct for g in groups) / sum(g.n for g in groups)
        out["reward/frac_all_wrong"] = sum(g.n_correct == 0 for g in groups) / len(groups)
        out["reward/frac_all_right"] = sum(g.n_correct == g.n for g in groups) / len(groups)
        out["reward/frac_degenerate_groups"] = sum(g.std < ZERO_ADV_TOL for g in groups) / len(groups)
    counts = {b: 0 for b in P_BUCKETS}
    for g in groups:
        counts[p_bucket(g.n_correct / g.n)] += 1
    out.update({f"reward/p_hist/{b}": float(c) for b, c in counts.items()})
    return out


def rollout_metrics(batch: RolloutBatch | ScoredBatch) -> dict[str, float]:
    """Over all samples of both passes: rollout/num_samples, rollout/num_explore_samples,
    rollout/resp_len_mean, rollout/resp_len_p90 (tokens), rollout/trunc_frac (finish_reason ==
    "length"), rollout/temperature_mean. Given a ScoredBatch, also ``truncation_metrics``."""
    if isinstance(batch, ScoredBatch):
        return rollout_metrics(batch.rollout) | truncation_metrics(batch)
    samples = batch.samples
    n_explore = sum(s.source == "explore" for s in samples)
    out = {"rollout/num_samples": float(len(samples)), "rollout/num_explore_samples": float(n_explore)}
    if not samples:
        return out
    lengths = np.array([len(s.response_token_ids) for s in samples], dtype=np.float64)
    out["rollout/resp_len_mean"] = float(lengths.mean())
    out["rollout/resp_len_p90"] = float(np.percentile(lengths, 90))
    out["rollout/trunc_frac"] = float(np.mean([s.truncated for s in samples]))
    out["rollout/temperature_mean"] = float(np.mean([s.temperature for s in samples]))
    return out


def truncation_metrics(scored: ScoredBatch) -> dict[str, float]:
    """rollout/trunc_frac_correct: truncated fraction among correct samples (omitted if none)."""
    flags = [s.truncated for s, r in zip(scored.rollout.samples, scored.results) if is_correct(r.score)]
    return {"rollout/trunc_frac_correct": float(np.mean(flags))} if flags else {}


def advantage_metrics(adv_B, groups: Optional[GroupAdvantages] = None) -> dict[str, float]:
    """algo/adv_pos_mean (mean of A > 0), algo/adv_neg_mean (mean of A < 0), algo/adv_abs_mean,
    algo/frac_zero_adv (|A| < ZERO_ADV_TOL). ``adv_B``: [B] tensor or sequence. With ``groups``
    (what the advantage mode counted), for the modes that binarise (asym_power, sign):
    algo/asym_nonbinary_group_frac (groups with a reward outside {0, 1}) and
    algo/asym_fallback_group_frac (groups given the grpo_std advantage, algo.asym_nonbinary=grpo)."""
    out = asym_group_metrics(groups) if groups is not None else {}
    adv = torch.as_tensor(adv_B, dtype=torch.float64).reshape(-1)
    if adv.numel() == 0:
        return out
    zero = adv.abs() < ZERO_ADV_TOL
    pos, neg = adv[(adv > 0) & ~zero], adv[(adv < 0) & ~zero]
    out |= {"algo/adv_abs_mean": adv.abs().mean().item(), "algo/frac_zero_adv": zero.double().mean().item()}
    if pos.numel():
        out["algo/adv_pos_mean"] = pos.mean().item()
    if neg.numel():
        out["algo/adv_neg_mean"] = neg.mean().item()
    return out


def asym_group_metrics(groups: GroupAdvantages) -> dict[str, float]:
    """The group shares of ``advantage_metrics``; {} for modes that do not binarise or no groups."""
    if groups.nonbinary_groups is None or groups.fallback_groups is None or groups.num_groups == 0:
        return {}
    return {"algo/asym_nonbinary_group_frac": groups.nonbinary_groups / groups.num_groups,
            "algo/asym_fallback_group_frac": groups.fallback_groups / groups.num_groups}


def _token_mean(entropy: np.ndarray, tokens: np.ndarray, select: np.ndarray) -> Optional[float]:
    """sum_i e_i n_i / sum_i n_i over the selected samples (None when they hold no tokens)."""
    n = tokens[select].sum()
    return float((entropy[select] * tokens[select]).sum() / n) if n > 0 else None


def entropy_metrics(entropy_per_sample: Sequence[float], num_tokens_per_sample: Sequence[int],
                    p_per_sample: Sequence[float], correct_per_sample: Sequence[bool],
                    prompt_id_per_sample: Optional[Sequence[str]] = None) -> dict[str, float]:
    """Entropy split by difficulty and outcome, from per-sample token-mean exact entropies.

    entropy/bucket/<b>: token-mean entropy over the samples whose prompt's p falls in bucket b
    (omitted when empty); entropy/bucket_samples/<b>: their count; entropy/bucket_prompts/<b>:
    distinct prompts (only when ``prompt_id_per_sample`` is given). entropy/pos_rollouts,
    entropy/neg_rollouts: token-mean over correct / wrong samples. entropy/seq_mean, entropy/p10,
    entropy/p90: mean and percentiles of the per-sample means (samples with >= 1 token).
    """
    e = np.asarray(entropy_per_sample, dtype=np.float64)
    n = np.asarray(num_tokens_per_sample, dtype=np.float64)
    correct = np.asarray(correct_per_sample, dtype=bool)
    buckets = np.array([p_bucket(float(p)) for p in p_per_sample], dtype=object)
    if not (len(e) == len(n) == len(correct) == len(buckets)):
        raise ValueError("entropy_metrics: per-sample inputs differ in length")
    out: dict[str, float] = {}
    for b in P_BUCKETS:
        sel = buckets == b
        out[f"entropy/bucket_samples/{b}"] = float(sel.sum())
        if prompt_id_per_sample is not None:
            ids = {pid for pid, s in zip(prompt_id_per_sample, sel) if s}
            out[f"entropy/bucket_prompts/{b}"] = float(len(ids))
        mean = _token_mean(e, n, sel) if len(e) else None
        if mean is not None:
            out[f"entropy/bucket/{b}"] = mean
    for key, sel in (("entropy/pos_rollouts", correct), ("entropy/neg_rollouts", ~correct)):
        mean = _token_mean(e, n, sel) if len(e) else None
        if mean is not None:
            out[key] = mean
    seq = e[n > 0]
    if seq.size:
        out["entropy/seq_mean"] = float(seq.mean())
        out["entropy/p10"] = float(np.percentile(seq, 10))
        out["entropy/p90"] = float(np.percentile(seq, 90))
    return out


def coef_metrics(directives: ControlDirectives) -> dict[str, float]:
    """entropy/coef_mean, entropy/coef_max, entropy/coef_nonzero_frac over the per-prompt lambdas,
    plus every controller global as entropy/<key without "entropy_">: coef_global -> entropy/coef_global,
    entropy_initial -> entropy/initial, entropy_target -> entropy/target, entropy_error -> entropy/error.
    A global already namespaced ("aer/entropy_all") is logged under its own name."""
    out: dict[str, float] = {}
    coefs = np.asarray(directives.entropy_coef, dtype=np.float64)
    if coefs.size:
        out["entropy/coef_mean"] = float(coefs.mean())
        out["entropy/coef_max"] = float(coefs.max())
        out["entropy/coef_nonzero_frac"] = float((coefs != 0).mean())
    for key, value in directives.globals.items():
        out[key if "/" in key else "entropy/" + key.removeprefix("entropy_")] = float(value)
    return out


def sampler_metrics(directives: ControlDirectives, explore: Optional[ScoredBatch] = None) -> dict[str, float]:
    """UEC-RL's second pass: sampler/hard_prompts (prompts given extra samples), sampler/extra_samples
    (their total), sampler/extra_hit_rate (fraction of those prompts with >= 1 correct extra sample;
    needs the scored extra samples ``explore``; omitted when no prompt got extra samples)."""
    extra = [(pid, n) for pid, n in zip(directives.prompt_ids, directives.extra_samples) if n > 0]
    out = {"sampler/hard_prompts": float(len(extra)),
           "sampler/extra_samples": float(sum(n for _, n in extra))}
    if explore is not None and extra:
        hit = {s.prompt_id for s, r in zip(explore.rollout.samples, explore.results) if is_correct(r.score)}
        out["sampler/extra_hit_rate"] = sum(pid in hit for pid, _ in extra) / len(extra)
    return out


def hora_metrics(directives: ControlDirectives, probe_groups: Sequence[GroupStats]) -> dict[str, float]:
    """HORA's allocation (nothing unless the directives' extra samples join their prompt's group):
    hora/budget (extra samples the controller could allocate), hora/budget_used (extra samples it
    allocated), hora/prompts_allocated (prompts given >= 1 extra sample), hora/samples_per_prompt_mean,
    hora/samples_per_prompt_min, hora/samples_per_prompt_max (probe + extra samples per prompt), and
    hora/samples/<bucket>: probe + extra samples of the prompts whose probe accuracy falls in that
    P_BUCKETS bucket (counts, also when 0)."""
    if not directives.extra_joins_group:
        return {}
    extra_by_prompt = dict(zip(directives.prompt_ids, directives.extra_samples))
    total = {g.prompt_id: g.n + extra_by_prompt.get(g.prompt_id, 0) for g in probe_groups}
    out = {"hora/budget": float(directives.extra_budget), "hora/budget_used": float(sum(directives.extra_samples)),
           "hora/prompts_allocated": float(sum(n > 0 for n in directives.extra_samples))}
    if total:
        out |= {"hora/samples_per_prompt_mean": float(np.mean(list(total.values()))),
                "hora/samples_per_prompt_min": float(min(total.values())),
                "hora/samples_per_prompt_max": float(max(total.values()))}
    per_bucket = {b: 0 for b in P_BUCKETS}
    for g in probe_groups:
        if g.n > 0:
            per_bucket[p_bucket(g.n_correct / g.n)] += total[g.prompt_id]
    return out | {f"hora/samples/{b}": float(c) for b, c in per_bucket.items()}


def filter_metrics(samples: Sequence, kept_B) -> dict[str, float]:
    """filter/kept_{regular,explore}: samples of each pass the keep rules let into the loss;
    filter/kept_samples, filter/total_samples over both passes."""
    kept = kept_B.tolist()
    out = {"filter/kept_samples": float(sum(kept)), "filter/total_samples": float(len(samples))}
    for source in ("regular", "explore"):
        out[f"filter/kept_{source}"] = float(sum(k for s, k in zip(samples, kept) if s.source == source))
    return out


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k) from n samples, c correct.

    Product form 1 - prod_{i=n-c+1}^{n} (1 - k/i) avoids huge binomials.
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k(n={n}, c={c}, k={k}): need 0 <= c <= n and 1 <= k <= n")
    if n - c < k:
        return 1.0  # every size-k subset contains a correct sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(n_correct_per_prompt: Sequence[int], n: int, k: int) -> float:
    """pass@k averaged over prompts, each with n samples of which n_correct_per_prompt[q] correct."""
    if not n_correct_per_prompt:
        raise ValueError("mean_pass_at_k: no prompts")
    return float(np.mean([pass_at_k(n, c, k) for c in n_correct_per_prompt]))
