"""Build the training prompt stream and the held-out evaluation prompts from the data section.

Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

from rlsys.config import DataConfig
from rlsys.data.datasets import load_rows
from rlsys.data.prompt_stream import PromptStream, split_train_eval
from rlsys.data.tasks import generate_task
from rlsys.types import Prompt


def load_source_rows(cfg: DataConfig) -> list[dict]:
    if cfg.source.startswith("builtin:"):
        name = cfg.source.split(":", 1)[1]
        return generate_task(name, cfg.num_train + cfg.num_eval, cfg.seed, cfg.difficulties)
    return load_rows(cfg.source)


def build_prompt_sources(cfg: DataConfig, model_path: str) -> tuple[PromptStream, list[Prompt]]:
    """(training stream, evaluation prompts); the eval split never appears in training."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    train_rows, eval_rows = split_train_eval(load_source_rows(cfg), cfg.num_eval, cfg.seed)
    if len(train_rows) < cfg.prompts_per_step:
        raise ValueError(f"data.source={cfg.source!r} has {len(train_rows)} training rows after holding out "
                         f"data.num_eval={cfg.num_eval}; data.prompts_per_step={cfg.prompts_per_step} needs more")
    stream = PromptStream(train_rows, tokenizer, cfg.prompts_per_step, cfg.seed, cfg.default_verifier,
                          cfg.chat_template)
    eval_prompts: list[Prompt] = []
    if eval_rows:
        eval_stream = PromptStream(eval_rows, tokenizer, len(eval_rows), cfg.seed, cfg.default_verifier,
                                   cfg.chat_template)
        eval_prompts = list(eval_stream.next_batch(0).prompts)
    return stream, eval_prompts
