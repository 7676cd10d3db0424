"""Checks of a run's prompts that need no cluster, run before anything is written or started: the
verifier every row names exists, and every prompt fits the model's context with room for the
response. Each failure names the key, or the dataset and row. Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, NamedTuple

from rlsys.config import ConfigError, DataConfig, RewardConfig, RolloutConfig
from rlsys.data.datasets import DatasetError
from rlsys.data.prompt_stream import encode_prompt
from rlsys.data.setup import SourceRows


def check_verifiers(source: SourceRows, data: DataConfig, reward: RewardConfig) -> None:
    """``data.default_verifier`` and every row's ``verifier`` name a registered verifier, counting
    those ``reward.verifier_paths`` registers (loaded here as the grading workers will load them).
    A dotted path in a row must be one of ``reward.verifier_paths``: data never chooses code to import."""
    from rlsys.reward import verifiers

    for path in reward.verifier_paths:
        try:
            verifiers.load_path(path)
        except Exception as e:  # noqa: BLE001 - any import failure is the config's, reported with its key
            raise ConfigError(f"reward.verifier_paths: cannot load {path!r} ({type(e).__name__}: "
                              f"{_first_line(e)})") from None
    known: dict[str, str] = {}  # name -> "" if usable, else why not

    def why_unknown(name: str) -> str:
        if name not in known:
            known[name] = _why_unknown(verifiers, name, reward.verifier_paths)
        return known[name]

    problem = why_unknown(data.default_verifier)
    if problem:
        raise ConfigError(f"data.default_verifier={data.default_verifier!r}: {problem}")
    for row, where in zip(source.rows, source.places):
        name = row.get("verifier")
        if name and why_unknown(name):
            raise DatasetError(f"{where}: column 'verifier': {why_unknown(name)}")


def _why_unknown(verifiers, name: str, paths: tuple[str, ...]) -> str:
    if name in paths:
        return ""
    if ":" in name:
        return f"{name!r} is a verifier path not listed in reward.verifier_paths ({list(paths)})"
    try:
        verifiers.get_verifier(name)
    except KeyError as e:
        return str(e.args[0])
    return ""


class PromptBudget(NamedTuple):
    """The most prompt tokens that leave room for the response, how that number is made, and what
    to change for a longer prompt."""

    tokens: int
    why: str
    remedy: str


def prompt_budget(model_path: str, rollout: RolloutConfig) -> PromptBudget:
    """The context is ``rollout.max_model_len``, or the model's ``max_position_embeddings`` if smaller,
    less ``rollout.max_new_tokens``."""
    context, why = rollout.max_model_len, f"rollout.max_model_len={rollout.max_model_len}"
    remedy = "raise rollout.max_model_len, lower rollout.max_new_tokens or shorten the prompt"
    config_json = Path(model_path) / "config.json"
    if config_json.is_file():
        positions = json.loads(config_json.read_text()).get("max_position_embeddings")
        if isinstance(positions, int) and positions < context:
            context, why = positions, f"the model's max_position_embeddings={positions} ({config_json})"
            remedy = "the model takes no longer context: lower rollout.max_new_tokens or shorten the prompt"
    return PromptBudget(context - rollout.max_new_tokens,
                        f"{why} less rollout.max_new_tokens={rollout.max_new_tokens}", remedy)


def check_prompt_lengths(source: SourceRows, tokenizer: Any, chat_template: bool, budget: PromptBudget) -> None:
    """Every prompt, tokenised as the model will be fed it, has at most ``budget.tokens`` tokens."""
    if budget.tokens < 1:
        raise ConfigError(f"no room for a prompt: {budget.why} leaves {budget.tokens} tokens")
    # transformers warns once about a prompt longer than the tokenizer's model_max_length; the
    # message below says it better, and on one line.
    quiet = logging.getLogger("transformers.tokenization_utils_base")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        _check_lengths(source, tokenizer, chat_template, budget)
    finally:
        quiet.setLevel(level)


def _check_lengths(source: SourceRows, tokenizer: Any, chat_template: bool, budget: PromptBudget) -> None:
    for row, where in zip(source.rows, source.places):
        try:
            _, token_ids = encode_prompt(row["prompt"], tokenizer, chat_template)
        except ValueError as e:
            raise DatasetError(f"{where}: column 'prompt': {e}") from None
        if not token_ids:  # e.g. a model dir without tokenizer files: transformers builds an empty one
            raise DatasetError(f"{where}: column 'prompt' is no tokens at all for this model's tokenizer "
                               f"(is the model dir missing its tokenizer files?)")
        if len(token_ids) > budget.tokens:
            raise DatasetError(f"{where}: column 'prompt' is {len(token_ids)} tokens, more than the {budget.tokens} "
                               f"that fit ({budget.why}): {budget.remedy}")


def _first_line(err: Exception) -> str:
    lines = [x for x in str(err).splitlines() if x.strip()]
    return lines[0][:300] if lines else ""
