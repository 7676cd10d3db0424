"""rollout.cpu_threads_bind: the cores each CPU vLLM engine binds its threads to."""
from __future__ import annotations

import pytest

from rlsys.config import CPU_THREADS_BIND_MODES, load_config
from rlsys.rollout.cpu_binding import CPU_BIND_MODES, omp_threads_bind


def test_spread_gives_each_engine_its_own_cores():
    assert [omp_threads_bind("spread", i, 0.5, [0, 1]) for i in range(2)] == ["0", "1"]
    assert [omp_threads_bind("spread", i, 2, range(8)) for i in range(4)] == ["0,1", "2,3", "4,5", "6,7"]
    assert omp_threads_bind("spread", 1, 1.9, [3, 7, 5]) == "5"  # sorted allowed cores; 1.9 CPUs -> 1 core


def test_spread_wraps_when_engines_outnumber_cores_and_caps_at_the_cores_there_are():
    assert [omp_threads_bind("spread", i, 1, [0, 1]) for i in range(4)] == ["0", "1", "0", "1"]
    assert omp_threads_bind("spread", 0, 16, [0, 1]) == "0,1"
    assert omp_threads_bind("spread", 1, 3, range(4)) == "3,0,1"


def test_vllm_leaves_the_variable_alone_and_nobind_turns_binding_off():
    assert omp_threads_bind("vllm", 0, 1, [0, 1]) is None
    assert omp_threads_bind("nobind", 3, 1, [0, 1]) == "nobind"


def test_bad_mode_and_empty_affinity_are_refused():
    with pytest.raises(ValueError, match="rollout.cpu_threads_bind='cores'"):
        omp_threads_bind("cores", 0, 1, [0])
    with pytest.raises(ValueError, match="no CPU is allowed"):
        omp_threads_bind("spread", 0, 1, [])


def test_the_config_knows_the_same_modes_and_names_a_bad_one():
    assert CPU_THREADS_BIND_MODES == CPU_BIND_MODES
    assert load_config(None, []).rollout.cpu_threads_bind == "spread"
    with pytest.raises(Exception, match="rollout.cpu_threads_bind"):
        load_config(None, ["rollout.cpu_threads_bind=numa"]).validate()
