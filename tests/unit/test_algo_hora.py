"""HORA hit utilities and greedy allocation (docs/algorithms.md#hora; #checked-properties 22, 23)."""
import heapq
import itertools
import random

import numpy as np
import pytest

from rlsys.algo.hora import (HORA_UTILITIES, greedy_allocate, hit_curve, hit_utility, unsolved_hit_curve,
                             unsolved_hit_utility)


def test_hit_utility_values():
    # n = 4, s = 0: a = 1, b = 5. U(1) = 1 - 5/6 = 1/6; U(2) = 1 - (5/6)(6/7) = 2/7
    assert hit_utility(0, 4, 0) == 0.0
    assert hit_utility(1, 4, 0) == pytest.approx(1 / 6)
    assert hit_utility(2, 4, 0) == pytest.approx(2 / 7)
    # s = n = 4: a = 5, b = 1: U(1) = 1 - 1/6 = 5/6
    assert hit_utility(1, 4, 4) == pytest.approx(5 / 6)


@pytest.mark.parametrize("n,s", [(4, 0), (4, 2), (8, 7), (0, 0)])
def test_hit_utility_monotone_concave(n, s):
    u = [hit_utility(m, n, s) for m in range(12)]
    gains = [b - a for a, b in zip(u, u[1:])]
    assert all(x >= 0 for x in gains)
    assert all(x >= y - 1e-15 for x, y in zip(gains, gains[1:]))


@pytest.mark.parametrize("budget", [0, 1, 5, 9])
def test_greedy_is_optimal_and_uses_budget(budget):
    n, s = [4, 4, 6], [0, 2, 5]
    alloc = greedy_allocate(n, s, budget)
    assert sum(alloc) == budget

    def total(a):
        return sum(hit_utility(m, nq, sq) for m, nq, sq in zip(a, n, s))

    best = max(total(a) for a in itertools.product(range(budget + 1), repeat=3) if sum(a) == budget)
    assert total(alloc) == pytest.approx(best, abs=1e-12)


def test_greedy_respects_cap():
    assert greedy_allocate([4, 4], [0, 0], budget=10, max_per_prompt=3) == [3, 3]


def test_unsolved_hit_values():
    # n = 4, s = 0: a = 1, b = 5. U(1) = E[(1-p) p] = ab / ((a+b)(a+b+1)) = 5/42
    assert unsolved_hit_utility(0, 4, 0) == 0.0
    assert unsolved_hit_utility(1, 4, 0) == pytest.approx(5 / 42)
    # s = n = 4 (a = 5, b = 1): the same first gain, E[p(1-p)] is symmetric in s <-> n - s
    assert unsolved_hit_utility(1, 4, 4) == pytest.approx(5 / 42)
    for m, n, s in [(0, 4, 2), (3, 4, 1), (7, 8, 8), (2, 0, 0)]:  # U(m) = hit(m+1) - hit(1)
        assert unsolved_hit_utility(m, n, s) == pytest.approx(hit_utility(m + 1, n, s) - hit_utility(1, n, s))


@pytest.mark.parametrize("n,s", [(4, 0), (4, 2), (4, 4), (8, 7), (0, 0)])
def test_unsolved_hit_monotone_concave(n, s):
    u = [unsolved_hit_utility(m, n, s) for m in range(12)]
    gains = [b - a for a, b in zip(u, u[1:])]
    assert all(x >= 0 for x in gains)
    assert all(x >= y - 1e-15 for x, y in zip(gains, gains[1:]))


@pytest.mark.parametrize("budget", [0, 3, 8])
def test_greedy_is_optimal_for_unsolved_hit(budget):
    n, s = [4, 4, 4], [0, 2, 4]
    alloc = greedy_allocate(n, s, budget, utility=unsolved_hit_curve)

    def total(a):
        return sum(unsolved_hit_utility(m, nq, sq) for m, nq, sq in zip(a, n, s))

    best = max(total(a) for a in itertools.product(range(budget + 1), repeat=3) if sum(a) == budget)
    assert sum(alloc) == budget and total(alloc) == pytest.approx(best, abs=1e-12)


def test_utility_registry_names_both():
    assert HORA_UTILITIES == {"hit": hit_curve, "unsolved_hit": unsolved_hit_curve}


def test_utilities_reject_bad_arguments():
    for u in (hit_utility, unsolved_hit_utility):
        with pytest.raises(ValueError):
            u(-1, 4, 0)
        with pytest.raises(ValueError):
            u(1, 4, 5)


def test_curves_hold_the_scalar_utilities():
    for curve, u in ((hit_curve, hit_utility), (unsolved_hit_curve, unsolved_hit_utility)):
        for n, s in [(4, 0), (4, 3), (8, 8), (0, 0)]:
            values = curve(9, n, s)
            assert values.shape == (10,) and values[0] == 0.0
            assert values.tolist() == pytest.approx([u(m, n, s) for m in range(10)], abs=1e-15)
    with pytest.raises(ValueError):
        hit_curve(3, 4, 5)


def one_at_a_time(n_P, s_P, budget, max_per_prompt, utility):
    """The greedy as the docstring states it: a heap of each prompt's next marginal gain, one rollout per pop
    (ties: lowest prompt index)."""
    alloc, cap = [0] * len(n_P), budget if max_per_prompt is None else max_per_prompt

    def gain(q):
        return utility(alloc[q] + 1, n_P[q], s_P[q]) - utility(alloc[q], n_P[q], s_P[q])

    heap = [(-gain(q), q) for q in range(len(n_P)) if cap > 0]
    heapq.heapify(heap)
    for _ in range(budget):
        if not heap:
            break
        _, q = heapq.heappop(heap)
        alloc[q] += 1
        if alloc[q] < cap:
            heapq.heappush(heap, (-gain(q), q))
    return alloc


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_greedy_equals_the_one_at_a_time_greedy(seed):
    rng = random.Random(seed)
    for _ in range(60):
        n_P = [rng.choice([2, 4, 4, 8]) for _ in range(rng.randint(0, 14))]
        s_P = [rng.randint(0, n) for n in n_P]
        budget, cap = rng.randint(0, 50), rng.choice([None, 1, 2, 5, 9])
        for name, curve in HORA_UTILITIES.items():
            scalar = {"hit": hit_utility, "unsolved_hit": unsolved_hit_utility}[name]
            assert greedy_allocate(n_P, s_P, budget, cap, curve) == one_at_a_time(n_P, s_P, budget, cap, scalar)


def test_flat_gains_go_to_the_lowest_prompt_first_up_to_the_cap():
    def flat(M, n, s):  # U(m) = m: every rollout gains 1, so ties decide everything
        return np.arange(M + 1, dtype=np.float64)

    assert greedy_allocate([4] * 4, [0] * 4, budget=7, max_per_prompt=5, utility=flat) == [5, 2, 0, 0]
    assert greedy_allocate([4] * 4, [0] * 4, budget=7, utility=flat) == [7, 0, 0, 0]
    assert greedy_allocate([4] * 3, [1] * 3, budget=30, max_per_prompt=4, utility=flat) == [4, 4, 4]
