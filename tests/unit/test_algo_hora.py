"""HORA hit utility and greedy allocation (docs/algorithms.md#hora; #checked-properties 22)."""
import itertools

import pytest

from rlsys.algo.hora import greedy_allocate, hit_utility


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
