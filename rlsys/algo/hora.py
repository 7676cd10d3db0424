"""HORA-style rollout allocation by hit utility (docs/algorithms.md#hora; arXiv 2605.07114).

Pure numpy maths: must not import ray, vllm, deepspeed or rlsys.config.

Deliberate choices [C]: the utility formula is a reconstruction from the abstract. After s successes in
n probe rollouts, p ~ Beta(1+s, 1+n-s) (uniform prior) and U(m) = P(at least one of m more rollouts
is correct) = 1 - prod_{j<m} (b+j)/(a+b+j). Taken literally its first marginal gain is E[p], so the
first extra rollouts go to the prompts most likely solved already; the paper's conditioning was not
verified, so the allocator takes any concave utility (``utility`` argument), and ``HORA_UTILITIES`` names
the two rlsys offers: ``hit`` (literal) and ``unsolved_hit`` (a hit counted only while the prompt is
still unsolved, see ``unsolved_hit_curve``). A utility is given as its curve U(0..M) (``UtilityCurve``).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np

# A utility as its curve: (M, n, s) -> U(0), U(1), ..., U(M) of m extra rollouts, float64 [M + 1].
UtilityCurve = Callable[[int, int, int], np.ndarray]


def _check(m: int, n: int, s: int) -> None:
    if not 0 <= s <= n or m < 0:
        raise ValueError(f"need 0 <= s <= n and m >= 0, got m={m} n={n} s={s}")


def _miss_moments(K: int, n: int, s: int) -> np.ndarray:
    """E[(1-p)^k] for k = 0..K with p ~ Beta(1+s, 1+n-s): cumulative products of (b+j)/(a+b+j),
    a = 1+s, b = 1+n-s. float64 [K + 1]."""
    a, b = 1 + s, 1 + n - s
    j_K = np.arange(K, dtype=np.float64)
    return np.concatenate(([1.0], np.cumprod((b + j_K) / (a + b + j_K))))


def hit_curve(M: int, n: int, s: int) -> np.ndarray:
    """U(m) = 1 - E[(1-p)^m] for m = 0..M, p ~ Beta(1+s, 1+n-s). U(0) = 0; non-decreasing and concave."""
    _check(M, n, s)
    return 1.0 - _miss_moments(M, n, s)


def unsolved_hit_curve(M: int, n: int, s: int) -> np.ndarray:
    """U(m) = E[(1-p) * (1 - (1-p)^m)] = E[1-p] - E[(1-p)^(m+1)] for m = 0..M, p ~ Beta(1+s, 1+n-s).

    The posterior probability that the m extra rollouts contain a correct one AND the prompt is not
    yet solved, "not yet solved" being the event that one further independent rollout is wrong: a hit
    on a prompt the policy already solves (p -> 1) is worth nothing. Equals hit(m+1) - hit(1).
    U(0) = 0; the marginal gain E[p (1-p)^(m+1)] is >= 0 and falls with m (concave). Its first gain
    E[p(1-p)] peaks at p = 1/2; later gains favour harder prompts.
    """
    _check(M, n, s)
    miss_K = _miss_moments(M + 1, n, s)
    return miss_K[1] - miss_K[1:]


def hit_utility(m: int, n: int, s: int) -> float:
    """``hit_curve``'s U(m)."""
    return float(hit_curve(m, n, s)[m])


def unsolved_hit_utility(m: int, n: int, s: int) -> float:
    """``unsolved_hit_curve``'s U(m)."""
    return float(unsolved_hit_curve(m, n, s)[m])


HORA_UTILITIES: dict[str, UtilityCurve] = {"hit": hit_curve, "unsolved_hit": unsolved_hit_curve}


def greedy_allocate(n_P: Sequence[int], s_P: Sequence[int], budget: int, max_per_prompt: Optional[int] = None,
                    utility: UtilityCurve = hit_curve) -> list[int]:
    """Extra rollouts per prompt maximising sum_q U(m_q; n_q, s_q) s.t. sum m_q = budget, m_q <= max_per_prompt.

    The greedy allocation by marginal gain, one rollout at a time to the prompt whose next one gains
    most (ties: lowest prompt index, then that prompt's next rollout), which is optimal for a concave
    U. Uses exactly the budget unless every prompt reaches ``max_per_prompt``.

    Computed without the one-at-a-time loop: prompts with the same (n, s) share one gain curve, so
    the greedy choice is "every (prompt, m) whose gain is above the budget's threshold gain tau, then
    the entries equal to tau in prompt order". Each class needs at most ceil(budget / its size) gains
    to find tau (a class whose gains stay at tau beyond that is extended to the cap), so the cost is a sort of about (number of classes) x (budget / class size) values, not P x budget
    heap operations. A gain curve is made non-increasing (``np.minimum.accumulate``) so that float
    noise in a concave U cannot reorder one prompt's own gains.
    """
    n_arr, s_arr = np.asarray(n_P, dtype=np.int64), np.asarray(s_P, dtype=np.int64)
    if n_arr.shape != s_arr.shape or n_arr.ndim != 1:
        raise ValueError(f"n_P ({len(n_P)}) and s_P ({len(s_P)}) must be sequences of the same length")
    P = n_arr.size
    cap = budget if max_per_prompt is None else min(int(max_per_prompt), budget)
    if P == 0 or budget <= 0 or cap <= 0:
        return [0] * P
    if budget >= P * cap:  # every prompt reaches the cap
        return [cap] * P
    classes_K2, class_P, count_K = np.unique(np.stack([n_arr, s_arr], axis=1), axis=0, return_inverse=True,
                                             return_counts=True)
    class_P = class_P.reshape(-1)
    gains = []  # per class: its non-increasing marginal gains g(0..L-1), L = what the budget could reach
    for (n, s), count in zip(classes_K2.tolist(), count_K.tolist()):
        L = min(cap, math.ceil(budget / count))
        gains.append(np.minimum.accumulate(np.diff(utility(L, n, s))))
    value_E = np.concatenate(gains)
    weight_E = np.repeat(count_K, [g.size for g in gains])
    order_E = np.argsort(-value_E, kind="stable")
    taken_E = np.cumsum(weight_E[order_E])
    tau = value_E[order_E[np.searchsorted(taken_E, budget)]]  # the gain of the budget-th rollout
    for k, (n, s) in enumerate(classes_K2.tolist()):  # a flat tail at tau may reach past the truncation: extend it
        if gains[k][-1] == tau and gains[k].size < cap:
            gains[k] = np.minimum.accumulate(np.diff(utility(cap, n, s)))
    above_K = np.array([int((g > tau).sum()) for g in gains])
    ties_K = np.array([int((g >= tau).sum()) for g in gains]) - above_K
    left = budget - int((above_K * count_K).sum())  # rollouts of gain exactly tau, in prompt order
    ties_P = ties_K[class_P]
    before_P = np.cumsum(ties_P) - ties_P
    alloc_P = above_K[class_P] + np.clip(left - before_P, 0, ties_P)
    return alloc_P.tolist()
