"""One-step-off sampling (trainer.async_steps=1): SampleAhead's order of passes, the stream state a
checkpoint records, errors, and the staleness bound. The sampler is a recorder standing in for
RegularSampler (the real one with engines: tests/integration/test_async.py)."""
from __future__ import annotations

import threading

import pytest

from rlsys.config import ConfigError, load_config
from rlsys.orchestration.driver import check_staleness
from rlsys.orchestration.sampling import SampleAhead


class Stream:
    def __init__(self):
        self.position = 0

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = state["position"]


class RecordingSampler:
    """``sample(version, step)`` advances the stream and returns what it was called with and on which thread;
    ``gate`` (when set) holds the pass until released; ``fail_at`` makes that step's pass raise."""

    def __init__(self, stream: Stream, gate: threading.Event | None = None, fail_at: int | None = None):
        self.stream, self.gate, self.fail_at, self.calls = stream, gate, fail_at, []

    def sample(self, version: int, step: int):
        if self.gate is not None:
            self.gate.wait(10)
        self.calls.append((version, step))
        if step == self.fail_at:
            raise ConnectionError(f"engine lost during step {step}")
        self.stream.position += 1
        return ("prompts", step), ("scored", version), {"thread": threading.current_thread().name}


def test_synchronous_mode_samples_on_take_and_start_is_a_no_op():
    stream = Stream()
    ahead = SampleAhead(RecordingSampler(stream), stream, enabled=False)
    ahead.start(0, 1)
    assert ahead.wait() == 0.0 and stream.position == 0
    prompts, scored, info = ahead.take(3, 0)
    assert (prompts, scored) == (("prompts", 0), ("scored", 3)) and info["thread"] == threading.main_thread().name
    ahead.close()


def test_the_pass_ahead_runs_in_a_thread_on_the_version_given_and_take_returns_it():
    stream, gate = Stream(), threading.Event()
    sampler = RecordingSampler(stream, gate)
    ahead = SampleAhead(sampler, stream, enabled=True)
    gate.set()
    assert ahead.take(0, 0)[1] == ("scored", 0)  # the first step: nothing ahead, sampled now
    gate.clear()
    ahead.start(0, 1)  # engines still at version 0 while step 0 trains
    assert sampler.calls == [(0, 0)]  # held by the gate: running concurrently, not yet done
    assert ahead.state_dict() == {"position": 1}  # a checkpoint now would sample step 1 again on resume
    gate.set()
    assert ahead.wait() >= 0.0 and sampler.calls == [(0, 0), (0, 1)]
    assert ahead.state_dict() == {"position": 1} and stream.position == 2
    prompts, scored, info = ahead.take(1, 1)
    assert prompts == ("prompts", 1) and scored == ("scored", 0) and info["thread"].startswith("rlsys-sample-ahead")
    assert ahead.state_dict() == {"position": 2}  # taken: the live stream again
    ahead.close()


def test_a_second_pass_ahead_and_a_pass_for_another_step_are_refused():
    stream = Stream()
    ahead = SampleAhead(RecordingSampler(stream), stream, enabled=True)
    ahead.start(0, 1)
    with pytest.raises(RuntimeError, match="step 1's pass is already ahead"):
        ahead.start(0, 2)
    ahead.wait()
    with pytest.raises(RuntimeError, match="the pass sampled ahead is step 1's, step 2 asked for its own"):
        ahead.take(1, 2)
    ahead.close()


def test_an_error_of_the_pass_ahead_reaches_take_and_a_resume_drops_the_pass():
    stream = Stream()
    ahead = SampleAhead(RecordingSampler(stream, fail_at=1), stream, enabled=True)
    ahead.start(0, 1)
    ahead.wait()  # waits, does not raise: the step's own take does
    with pytest.raises(ConnectionError, match="engine lost during step 1"):
        ahead.take(1, 1)
    ahead.start(1, 2)
    ahead.wait()
    ahead.load_state_dict({"position": 7})  # a restore: nothing ahead any more, the stream rewound
    assert stream.position == 7 and ahead.take(5, 3)[1] == ("scored", 5)
    ahead.close()


def test_staleness_is_bounded_by_async_steps():
    assert check_staleness(4, 4, 0) == 0 and check_staleness(4, 3, 1) == 1
    with pytest.raises(RuntimeError, match="2 updates behind, trainer.async_steps=1 allows 0..1"):
        check_staleness(5, 3, 1)
    with pytest.raises(RuntimeError, match="1 updates behind, trainer.async_steps=0"):
        check_staleness(4, 3, 0)
    with pytest.raises(RuntimeError):
        check_staleness(3, 4, 1)  # a batch from the future


@pytest.mark.parametrize("overrides, expected", [
    (["trainer.async_steps=2"], "trainer.async_steps=2: must be one of"),
    (["trainer.async_steps=1", "algo=uec_rl"], "trainer.async_steps=1 with entropy_control.controller='uec_rl'"),
    (["trainer.async_steps=1", "algo=hora"], "trainer.async_steps=1 with entropy_control.controller='hora'"),
])
def test_async_settings_that_cannot_run_are_refused(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(None, overrides).validate()


def test_async_is_accepted_with_the_single_pass_presets():
    for preset in ("grpo", "dapo", "aer", "asymgrpo", "skywork"):
        load_config(None, ["trainer.async_steps=1", f"algo={preset}"]).validate()
