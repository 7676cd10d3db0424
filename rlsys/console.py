"""What a run prints: rlsys's own lines, and the libraries' logs only at WARNING unless ``--verbose``.

The level is one environment variable, ``RLSYS_LOG_LEVEL`` (``warning`` or ``info``), set by the
command line (``rlsys train --verbose``) and carried to every actor (``cluster.actor_env``), because
vLLM, Ray, DeepSpeed, transformers and torch each read their verbosity in their own process, most of
them once, at import. This module imports none of them.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os

LOG_LEVEL_ENV = "RLSYS_LOG_LEVEL"
LEVELS = ("warning", "info")
LIBRARY_LOGGERS = ("ray", "deepspeed", "transformers", "torch", "vllm", "filelock", "urllib3")


def set_verbose(verbose: bool) -> None:
    """Choose the level for this process and every process it starts (actors, vLLM's workers)."""
    os.environ[LOG_LEVEL_ENV] = "info" if verbose else "warning"
    quiet_python_loggers()


def verbose() -> bool:
    level = os.environ.get(LOG_LEVEL_ENV, "warning").lower()
    if level not in LEVELS:
        raise ValueError(f"{LOG_LEVEL_ENV}={level!r}: must be one of {LEVELS}")
    return level == "info"


def library_env() -> dict[str, str]:
    """Environment variables that set the libraries' verbosity where they read it, at process start.

    Quiet (the default): Python FutureWarnings of library internals, transformers' and the HF hub's
    progress bars and INFO lines, and torch's C++ warnings are off. vLLM's level is set by the rollout
    engine itself (``rlsys.rollout.logs``), before vLLM is imported.
    """
    env = {LOG_LEVEL_ENV: "info" if verbose() else "warning"}
    if not verbose():
        env |= {"PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "warning",
                "TORCH_CPP_LOG_LEVEL": "ERROR"}
    return env


def quiet_python_loggers() -> None:
    """The libraries' Python loggers in this process at WARNING (INFO when verbose)."""
    level = logging.INFO if verbose() else logging.WARNING
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)


def quiet_stdout():
    """A context that drops what a library prints on stdout (DeepSpeed's op-build notices) unless verbose."""
    return contextlib.nullcontext() if verbose() else contextlib.redirect_stdout(io.StringIO())
