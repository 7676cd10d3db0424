"""The check phase of ``rlsys train``: every check that needs no cluster, before anything is written
to the run dir or Ray starts, cheapest first, so a bad input fails in seconds with one message naming
the key, or the file and row. Imports neither ray nor torch (only the model build does); the start
phase is ``driver.start_run``.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rlsys.config import Config, ConfigError
from rlsys.data.checks import check_prompt_lengths, check_verifiers, prompt_budget
from rlsys.data.prompt_stream import PromptStream
from rlsys.data.setup import build_prompt_sources, check_split, load_tokenizer, read_source
from rlsys.models.resolve import resolve_model
from rlsys.orchestration import checkpoint, cluster
from rlsys.types import Prompt


@dataclass
class RunPlan:
    """What ``check_run`` found: the checkpoint to resume from, the model dir and the prompts."""

    resume_from: Optional[Path]
    model_path: str
    stream: PromptStream
    eval_prompts: list[Prompt]


def check_run(cfg: Config) -> RunPlan:
    """Raise ConfigError / DatasetError at the first problem; nothing is written but the built-in
    model's cache (``model.cache_dir``), and that only once the data has been read and checked."""
    cfg.validate()  # every field, one line naming each bad key
    check_sinks(cfg)
    resume_from = checkpoint.check_resume_mode(cfg.trainer)
    checkpoint.check_resume_config(cfg, resume_from)  # a resume must continue the same run
    cluster.check_cluster(cfg)  # an embedded cluster fits the machine; a cluster to join answers
    source = read_source(cfg.data)  # every row, before the model is built (a first build takes a minute)
    check_verifiers(source, cfg.data, cfg.reward)
    check_split(source, cfg.data)
    model_path = resolve_model(cfg.model, seed=cfg.trainer.seed)
    tokenizer = load_tokenizer(model_path)
    check_prompt_lengths(source, tokenizer, cfg.data.chat_template, prompt_budget(model_path, cfg.rollout))
    stream, eval_prompts = build_prompt_sources(cfg.data, model_path, source, tokenizer)
    return RunPlan(resume_from, model_path, stream, eval_prompts)


def tensorboard_installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def check_sinks(cfg: Config) -> None:
    if cfg.trainer.tensorboard and not tensorboard_installed():
        raise ConfigError("trainer.tensorboard=true: the tensorboard package is not installed "
                          "(pip install 'rlsys[tensorboard]'), or set trainer.tensorboard=false")
