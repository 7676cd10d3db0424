"""HORA-style rollout allocation by hit utility (docs/algorithms.md#hora; arXiv 2605.07114).

Pure Python maths: must not import ray, vllm, deepspeed or rlsys.config.

Deliberate choices [C]: the utility formula is a reconstruction from the abstract. After s successes in
n probe rollouts, p ~ Beta(1+s, 1+n-s) (uniform prior) and U(m) = P(at least one of m more rollouts
is correct) = 1 - prod_{j<m} (b+j)/(a+b+j). Taken literally it favours easy prompts; the paper's
conditioning was not verified, so the allocator takes any concave utility (``utility`` argument).
"""
from __future__ import annotations

import heapq
from typing import Callable, Sequence

Utility = Callable[[int, int, int], float]  # (m, n, s) -> utility of m extra rollouts


def hit_utility(m: int, n: int, s: int) -> float:
    """1 - E[(1-p)^m] with p ~ Beta(1+s, 1+n-s). U(0) = 0; non-decreasing and concave in m."""
    if not 0 <= s <= n or m < 0:
        raise ValueError(f"need 0 <= s <= n and m >= 0, got m={m} n={n} s={s}")
    a, b = 1 + s, 1 + n - s
    miss = 1.0
    for j in range(m):
        miss *= (b + j) / (a + b + j)
    return 1.0 - miss


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
