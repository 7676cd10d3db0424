"""PromptStatsColumns: the form a step's PromptStats cross to the controller actor in."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from rlsys.types import PromptStats, PromptStatsColumns


def test_columns_round_trip_the_records_in_order_through_pickle():
    stats = [PromptStats("q2", 8, 3), PromptStats("q0", 4, 0), PromptStats("q1", 12, 12)]
    columns = PromptStatsColumns.of(stats)
    assert columns.prompt_ids == ("q2", "q0", "q1")
    assert columns.n_samples_P.dtype == np.int64 and columns.n_samples_P.tolist() == [8, 4, 12]
    assert columns.n_correct_P.tolist() == [3, 0, 12]
    assert pickle.loads(pickle.dumps(columns, protocol=5)).to_list() == stats
    back = columns.to_list()
    assert back == stats and all(type(s.n_samples) is int and type(s.n_correct) is int for s in back)


def test_no_stats_and_misaligned_columns():
    assert PromptStatsColumns.of([]).to_list() == []
    with pytest.raises(ValueError):
        PromptStatsColumns(("q0", "q1"), np.array([4]), np.array([1])).to_list()
