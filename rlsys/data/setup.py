"""Build the training prompt stream and the held-out evaluation prompts from the data section.

Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from rlsys.config import ConfigError, DataConfig
from rlsys.data.datasets import read_rows
from rlsys.data.prompt_stream import PromptStream, split_train_eval
from rlsys.data.tasks import generate_task
from rlsys.types import Prompt


@dataclass(frozen=True)
class SourceRows:
    """The validated rows of ``data.source`` and where each came from (``"FILE: line N"``,
    ``"builtin:TASK: row N (id ...)"``), for the messages of later checks."""

    rows: list[dict]
    places: list[str]


def read_source(cfg: DataConfig) -> SourceRows:
    """Read (a file) or generate (a built-in task) and validate every row of ``cfg.source``."""
    if cfg.source.startswith("builtin:"):
        name = cfg.source.split(":", 1)[1]
        rows = generate_task(name, cfg.num_train + cfg.num_eval, cfg.seed, cfg.difficulties)
        return SourceRows(rows, [f"{cfg.source}: row {i + 1} (id {r['id']})" for i, r in enumerate(rows)])
    return SourceRows(*read_rows(cfg.source))


def load_source_rows(cfg: DataConfig) -> list[dict]:
    return read_source(cfg).rows


def load_tokenizer(model_path: str) -> Any:
    """The model's tokenizer; a model dir without a loadable one is a ConfigError naming it."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as e:  # no tokenizer files, or files transformers cannot parse
        first = next((x for x in str(e).splitlines() if x.strip()), type(e).__name__)
        raise ConfigError(f"model {model_path!r}: cannot load its tokenizer ({first[:300]})") from None


def check_split(source: SourceRows, cfg: DataConfig) -> None:
    """``data.num_eval`` held-out rows still leave ``data.prompts_per_step`` training rows; needs only
    the rows, so it runs before the model is built."""
    if not 0 <= cfg.num_eval < len(source.rows):
        raise ConfigError(f"data.num_eval={cfg.num_eval}: data.source={cfg.source!r} has {len(source.rows)} rows; "
                          f"hold out fewer")
    if len(source.rows) - cfg.num_eval < cfg.prompts_per_step:
        raise ConfigError(f"data.prompts_per_step={cfg.prompts_per_step}: data.source={cfg.source!r} has "
                          f"{len(source.rows) - cfg.num_eval} training rows after holding out "
                          f"data.num_eval={cfg.num_eval}")


def build_prompt_sources(cfg: DataConfig, model_path: str, source: Optional[SourceRows] = None,
                         tokenizer: Any = None) -> tuple[PromptStream, list[Prompt]]:
    """(training stream, evaluation prompts); the eval split never appears in training. ``source``
    and ``tokenizer``, when given, are the already read rows and the model's tokenizer."""
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_path)
    source = source or read_source(cfg)
    check_split(source, cfg)
    train_rows, eval_rows = split_train_eval(source.rows, cfg.num_eval, cfg.seed)
    stream = PromptStream(train_rows, tokenizer, cfg.prompts_per_step, cfg.seed, cfg.default_verifier,
                          cfg.chat_template)
    eval_prompts: list[Prompt] = []
    if eval_rows:
        eval_stream = PromptStream(eval_rows, tokenizer, len(eval_rows), cfg.seed, cfg.default_verifier,
                                   cfg.chat_template)
        eval_prompts = list(eval_stream.next_batch(0).prompts)
    return stream, eval_prompts
