"""The console: library log levels (quiet by default, --verbose), vLLM's quiet logging config,
the step line's ETA."""
from __future__ import annotations

import logging
import logging.config

import pytest

from rlsys import cli, console
from rlsys.metrics.logger import MetricsLogger, StepClock, format_seconds
from rlsys.rollout import logs


@pytest.fixture
def level_env(monkeypatch):
    monkeypatch.delenv(console.LOG_LEVEL_ENV, raising=False)
    monkeypatch.delenv("VLLM_LOGGING_CONFIG_PATH", raising=False)
    monkeypatch.delenv("VLLM_LOGGING_LEVEL", raising=False)
    return monkeypatch


def test_quiet_by_default_and_verbose_on_request(level_env):
    assert not console.verbose()
    quiet = console.library_env()
    assert quiet[console.LOG_LEVEL_ENV] == "warning"
    assert quiet["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and "FutureWarning" in quiet["PYTHONWARNINGS"]
    console.set_verbose(True)
    assert console.verbose()
    assert console.library_env() == {console.LOG_LEVEL_ENV: "info"}  # the libraries' own defaults
    assert logging.getLogger("ray").level == logging.INFO
    console.set_verbose(False)
    assert logging.getLogger("ray").level == logging.WARNING


def test_a_bad_level_is_named(level_env):
    level_env.setenv(console.LOG_LEVEL_ENV, "loud")
    with pytest.raises(ValueError, match="RLSYS_LOG_LEVEL='loud'"):
        console.verbose()


def test_the_cli_flag_sets_the_level_for_the_run(level_env, tmp_path):
    assert cli.main(["train", str(tmp_path / "missing.yaml"), "--verbose"]) == 2  # fails early, flag applied
    assert console.verbose()
    level_env.setenv(console.LOG_LEVEL_ENV, "warning")
    cli.main(["train", str(tmp_path / "missing.yaml")])
    assert not console.verbose()


def test_quiet_vllm_config_drops_known_benign_warnings_only(level_env, tmp_path, capsys):
    level_env.setattr(logs.tempfile, "gettempdir", lambda: str(tmp_path))
    logs.configure_vllm_logging()
    import json
    import os

    config = json.loads(open(os.environ["VLLM_LOGGING_CONFIG_PATH"]).read())
    assert config == logs.logging_config("WARNING") and os.environ["VLLM_LOGGING_LEVEL"] == "WARNING"
    benign = logging.LogRecord("vllm.x", logging.WARNING, "f.py", 1, "Enforce eager set, disabling ...", (), None)
    real = logging.LogRecord("vllm.x", logging.WARNING, "f.py", 1, "KV cache is too small", (), None)
    drop = logs.DropKnownBenign()
    assert not drop.filter(benign) and drop.filter(real)


def test_verbose_leaves_vllm_its_defaults(level_env):
    console.set_verbose(True)
    logs.configure_vllm_logging()
    import os

    assert "VLLM_LOGGING_CONFIG_PATH" not in os.environ
    console.set_verbose(False)


def test_the_quiet_config_is_a_valid_logging_config():
    pytest.importorskip("vllm")
    logger_state = logging.getLogger("vllm").handlers[:], logging.getLogger("vllm").level
    try:
        logging.config.dictConfig(logs.logging_config("WARNING"))
        handler = logging.getLogger("vllm").handlers[0]
        assert handler.level == logging.WARNING and handler.filters
    finally:
        logging.getLogger("vllm").handlers[:], level = logger_state
        logging.getLogger("vllm").setLevel(level)


def test_eta_is_mean_recent_step_time_times_steps_left():
    now = [0.0]
    clock = StepClock(total_steps=10, window=3, clock=lambda: now[0])
    assert clock.tick(0) is None  # no step measured yet
    now[0] = 2.0
    assert clock.tick(1) == pytest.approx(2.0 * 8)
    for step, t in ((2, 4.0), (3, 10.0), (4, 12.0)):
        now[0] = t
        eta = clock.tick(step)
    assert eta == pytest.approx((12.0 - 2.0) / 3 * 5)  # the last 3 intervals
    assert StepClock(None).tick(0) is None


def test_format_seconds():
    assert [format_seconds(x) for x in (4.4, 65, 3600 * 2 + 7 * 60 + 3)] == ["4s", "1m05s", "2h07m"]


def test_step_lines_carry_an_eta(tmp_path, capsys):
    logger = MetricsLogger(tmp_path / "metrics.jsonl", total_steps=3)
    for step in range(3):
        logger.log(step, {"reward/accuracy_mean": 0.5})
    logger.close()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "eta" not in lines[0] and lines[1].endswith("eta 0s") and " eta " in lines[2]
