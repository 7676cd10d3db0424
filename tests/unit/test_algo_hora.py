"""HORA hit utilities and greedy allocation (docs/algorithms.md#hora; #checked-properties 22, 23)."""
import itertools

import pytest

from rlsys.algo.hora import HORA_UTILITIES, greedy_allocate, hit_utility, unsolved_hit_utility


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
    alloc = greedy_allocate(n, s, budget, utility=unsolved_hit_utility)

    def total(a):
        return sum(unsolved_hit_utility(m, nq, sq) for m, nq, sq in zip(a, n, s))

    best = max(total(a) for a in itertools.product(range(budget + 1), repeat=3) if sum(a) == budget)
    assert sum(alloc) == budget and total(alloc) == pytest.approx(best, abs=1e-12)


def test_utility_registry_names_both():
    assert HORA_UTILITIES == {"hit": hit_utility, "unsolved_hit": unsolved_hit_utility}


def test_utilities_reject_bad_arguments():
    for u in (hit_utility, unsolved_hit_utility):
        with pytest.raises(ValueError):
            u(-1, 4, 0)
        with pytest.raises(ValueError):
            u(1, 4, 5)
