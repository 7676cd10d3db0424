"""``rlsys eval``: pass@1 and unbiased pass@k of a model on one or more datasets.

Starts (or joins) Ray, one vLLM rollout group and the reward service; no learner. The target is a
Hugging Face model dir, a run dir (its ``final/`` model, with the run's own ``config.yaml``), or a
config YAML (its ``model.path``). Datasets are read and checked before any actor starts.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from rlsys.config import Config, load_config
from rlsys.data.checks import check_prompt_lengths, check_verifiers, prompt_budget
from rlsys.data.setup import build_prompt_sources, load_tokenizer, read_source
from rlsys.models.resolve import resolve_model
from rlsys.orchestration import cluster
from rlsys.orchestration.actors import RewardClient, RolloutGroup
from rlsys.orchestration.stages import SeedScope, difficulty_accuracy, eval_metrics, eval_requests
from rlsys.types import Prompt


def resolve_target(target: str, overrides: list[str]) -> tuple[Config, str]:
    """(config, model dir). A run dir brings its ``config.yaml``, so a built-in task is evaluated with
    the run's held-out split, lengths and seeds (the numbers its metrics.jsonl reports)."""
    path = Path(target)
    if path.suffix in (".yaml", ".yml"):
        cfg = load_config(target, overrides)
        return cfg, resolve_model(cfg.model, seed=cfg.trainer.seed)
    if (path / "config.json").is_file():
        return load_config(None, overrides), str(path.resolve())
    if (path / "final" / "config.json").is_file():
        run_config = path / "config.yaml"
        cfg = load_config(str(run_config) if run_config.is_file() else None, overrides)
        return cfg, str((path / "final").resolve())
    raise FileNotFoundError(f"{target!r}: not a model dir (no config.json), a run dir with final/, or a .yaml config")


def eval_prompts(cfg: Config, source: str, model_path: str) -> list[Prompt]:
    """The prompts ``source`` is evaluated on: a built-in task's held-out split (the ``data.num_eval``
    prompts training evaluates on with this config, never its training prompts); every row of a
    .jsonl/.parquet file, in file order. Every row is read, its verifier name and its token length
    checked before any worker starts. Raises ValueError (DatasetError, ConfigError) naming the file,
    row and column, or the config key, at fault."""
    builtin = source.startswith("builtin:")
    data_cfg = dataclasses.replace(cfg.data, source=source,
                                   **({} if builtin else {"num_eval": 0, "prompts_per_step": 1}))
    rows = None if builtin else read_source(data_cfg)  # the loader's message (file, line, column) comes first
    dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, path=model_path), data=data_cfg).validate()
    rows = rows or read_source(data_cfg)
    check_verifiers(rows, data_cfg, cfg.reward)
    tokenizer = load_tokenizer(model_path)
    check_prompt_lengths(rows, tokenizer, data_cfg.chat_template, prompt_budget(model_path, cfg.rollout))
    stream, held_out = build_prompt_sources(data_cfg, model_path, rows, tokenizer)
    if builtin and not held_out:
        raise ValueError(f"{source}: data.num_eval=0, but a built-in task is evaluated on its held-out split")
    return held_out if builtin else stream.all_prompts()


def run_eval(target: str, datasets: list[str], k: int, temperature: float, overrides: list[str]) -> dict:
    """Returns {dataset: {eval/pass@1, eval/pass@k, eval/temperature, ...}}."""
    if k < 1:
        raise ValueError(f"--k={k}: must be >= 1")
    if temperature < 0:
        raise ValueError(f"--temperature={temperature}: must be >= 0")
    cfg, model_path = resolve_target(target, overrides)
    rollout_cfg = dataclasses.replace(cfg.rollout, num_workers=min(cfg.rollout.num_workers, 1))
    prompts = {source: eval_prompts(cfg, source, model_path) for source in datasets or [cfg.data.source]}
    cluster.check_cluster(cfg, (rollout_cfg.num_cpus_per_worker + cfg.reward.num_cpus,  # one engine, no learner
                                f"rollout.num_cpus_per_worker={rollout_cfg.num_cpus_per_worker:g} + "
                                f"reward.num_cpus={cfg.reward.num_cpus:g}"))
    cluster.connect(cfg)
    rollout = RolloutGroup(rollout_cfg, model_path, cfg.model.dtype)
    reward = RewardClient(cfg.reward)
    report = {}
    try:
        for source, source_prompts in prompts.items():
            scored = reward.score(rollout.generate(eval_requests(source_prompts, k, temperature, SeedScope(cfg.rollout.seed, "eval", 0)), 0))
            report[source] = eval_metrics(scored, k, temperature) | difficulty_accuracy(scored)
    finally:
        rollout.shutdown()
        reward.shutdown()
    return report
