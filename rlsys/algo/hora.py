"""HORA-style rollout allocation by hit utility (docs/algorithms.md#hora; arXiv 2605.07114).

Pure Python maths: must not import ray, vllm, deepspeed or rlsys.config.

Deliberate choices [C]: the utility formula is a reconstruction from the abstract. After s successes in
n probe rollouts, p ~ Beta(1+s, 1+n-s) (uniform prior) and U(m) = P(at least one of m more rollouts
is correct) = 1 - prod_{j<m} (b+j)/(a+b+j). Taken literally its first marginal gain is E[p], so the
first extra rollouts go to the prompts most likely solved already; the paper's conditioning was not
verified, so the allocator takes any concave utility (``utility`` argument), and ``HORA_UTILITIES`` names
the two rlsys offers: ``hit`` (literal) and ``unsolved_hit`` (a hit counted only while the prompt is
still unsolved, see ``unsolved_hit_utility``).
"""
from __future__ import annotations

import heapq
from typing import Callable, Sequence

Utility = Callable[[int, int, int], float]  # (m, n, s) -> utility of m extra rollouts


def _check(m: int, n: int, s: int) -> None:
    if not 0 <= s <= n or m < 0:
        raise ValueError(f"need 0 <= s <= n and m >= 0, got m={m} n={n} s={s}")


def _miss_moment(k: int, n: int, s: int) -> float:
    """E[(1-p)^k] with p ~ Beta(1+s, 1+n-s): prod_{j<k} (b+j)/(a+b+j), a = 1+s, b = 1+n-s."""
    a, b = 1 + s, 1 + n - s
    miss = 1.0
    for j in range(k):
        miss *= (b + j) / (a + b + j)
    return miss


def hit_utility(m: int, n: int, s: int) -> float:
    """1 - E[(1-p)^m] with p ~ Beta(1+s, 1+n-s). U(0) = 0; non-decreasing and concave in m."""
    _check(m, n, s)
    return 1.0 - _miss_moment(m, n, s)


def unsolved_hit_utility(m: int, n: int, s: int) -> float:
    """E[(1-p) * (1 - (1-p)^m)] = E[1-p] - E[(1-p)^(m+1)] with p ~ Beta(1+s, 1+n-s).

    The posterior probability that the m extra rollouts contain a correct one AND the prompt is not
    yet solved, "not yet solved" being the event that one further independent rollout is wrong: a hit
    on a prompt the policy already solves (p -> 1) is worth nothing. Equals hit_utility(m+1) -
    hit_utility(1). U(0) = 0; the marginal gain E[p (1-p)^(m+1)] is >= 0 and falls with m (concave).
    Its first gain E[p(1-p)] peaks at p = 1/2; later gains favour harder prompts.
    """
    _check(m, n, s)
    return _miss_moment(1, n, s) - _miss_moment(m + 1, n, s)


HORA_UTILITIES: dict[str, Utility] = {"hit": hit_utility, "unsolved_hit": unsolved_hit_utility}


def greedy_allocate(n_P: Sequence[int], s_P: Sequence[int], budget: int, max_per_prompt: int | None = None,
                    utility: Utility = hit_utility) -> list[int]:
    """Extra rollouts per prompt maximising sum_q U(m_q; n_q, s_q) s.t. sum m_q = budget.

    Greedy by marginal gain (ties: lowest prompt index); optimal for concave U. Uses exactly the
    budget unless every prompt reaches ``max_per_prompt``.
    """
    P = len(n_P)
    alloc = [0] * P
    cap = budget if max_per_prompt is None else max_per_prompt

    def gain(q: int) -> float:
        return utility(alloc[q] + 1, n_P[q], s_P[q]) - utility(alloc[q], n_P[q], s_P[q])

    heap = [(-gain(q), q) for q in range(P) if cap > 0]
    heapq.heapify(heap)
    for _ in range(budget):
        if not heap:
            break
        _, q = heapq.heappop(heap)
        alloc[q] += 1
        if alloc[q] < cap:
            heapq.heappush(heap, (-gain(q), q))
    return alloc
