"""``rlsys eval``: pass@1 and unbiased pass@k of a model on one or more datasets.

Starts (or joins) Ray, one vLLM rollout group and the reward service; no learner. The target is a
Hugging Face model dir, a run dir (its ``final/`` model, with the run's own ``config.yaml``), or a
config YAML (its ``model.path``). Like ``rlsys train`` it checks everything first (``check_eval``:
every dataset read, verifier names, the cluster's size or address, then the model and every prompt's
token length), before any worker starts; ray and torch are imported only after that.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rlsys.config import Config, DataConfig, RolloutConfig, load_config
from rlsys.data.checks import check_prompt_lengths, check_verifiers, prompt_budget
from rlsys.data.setup import SourceRows, build_prompt_sources, check_split, load_tokenizer, read_source
from rlsys.models.resolve import resolve_model
from rlsys.orchestration import cluster
from rlsys.types import Prompt


@dataclass
class EvalPlan:
    """What ``check_eval`` found: the config, the engine group's section, the model dir, the prompts
    of each dataset, and how they are sampled."""

    cfg: Config
    rollout: RolloutConfig
    model_path: str
    prompts: dict[str, list[Prompt]]
    k: int
    temperature: float


def target_config(target: str, overrides: list[str]) -> tuple[Config, Optional[str]]:
    """(config, model dir; None when it is the config's ``model.path``, resolved (built) only once the
    data is checked). A run dir brings its ``config.yaml``, so a built-in task is evaluated with the
    run's held-out split, lengths and seeds (the numbers its metrics.jsonl reports)."""
    path = Path(target)
    if path.suffix in (".yaml", ".yml"):
        return load_config(target, overrides), None
    if (path / "config.json").is_file():
        return load_config(None, overrides), str(path.resolve())
    if (path / "final" / "config.json").is_file():
        run_config = path / "config.yaml"
        cfg = load_config(str(run_config) if run_config.is_file() else None, overrides)
        return cfg, str((path / "final").resolve())
    raise FileNotFoundError(f"{target!r}: not a model dir (no config.json), a run dir with final/, or a .yaml config")


def read_eval_source(cfg: Config, source: str, model_path: Optional[str]) -> tuple[DataConfig, SourceRows]:
    """(data section, checked rows) of dataset ``source``: a built-in task as the config generates it
    (evaluated on its held-out split), a .jsonl/.parquet file on every row. Needs no model. Raises
    ValueError (DatasetError, ConfigError) naming the file, row and column, or the key."""
    builtin = source.startswith("builtin:")
    data_cfg = dataclasses.replace(cfg.data, source=source,
                                   **({} if builtin else {"num_eval": 0, "prompts_per_step": 1}))
    rows = None if builtin else read_source(data_cfg)  # the loader's message (file, line, column) comes first
    model = cfg.model if model_path is None else dataclasses.replace(cfg.model, path=model_path)
    dataclasses.replace(cfg, model=model, data=data_cfg).validate()
    if builtin and data_cfg.num_eval == 0:
        raise ValueError(f"{source}: data.num_eval=0, but a built-in task is evaluated on its held-out split")
    rows = rows or read_source(data_cfg)
    check_verifiers(rows, data_cfg, cfg.reward)
    check_split(rows, data_cfg)
    return data_cfg, rows


def eval_prompts(data_cfg: DataConfig, rows: SourceRows, model_path: str, tokenizer, rollout: RolloutConfig
                 ) -> list[Prompt]:
    """The prompts of checked ``rows``, each checked to fit the model's context with room for the
    response: a built-in task's held-out split (the prompts training evaluates on with this config,
    never its training prompts), every row of a file in file order."""
    check_prompt_lengths(rows, tokenizer, data_cfg.chat_template, prompt_budget(model_path, rollout))
    stream, held_out = build_prompt_sources(data_cfg, model_path, rows, tokenizer)
    return held_out if data_cfg.source.startswith("builtin:") else stream.all_prompts()


def check_eval(target: str, datasets: list[str], k: int, temperature: float, overrides: list[str]) -> EvalPlan:
    """Every check that needs no cluster, the cheap ones before the model is built."""
    if k < 1:
        raise ValueError(f"--k={k}: must be >= 1")
    if temperature < 0:
        raise ValueError(f"--temperature={temperature}: must be >= 0")
    cfg, model_path = target_config(target, overrides)
    sources = {source: read_eval_source(cfg, source, model_path) for source in datasets or [cfg.data.source]}
    rollout = dataclasses.replace(cfg.rollout, num_workers=min(cfg.rollout.num_workers, 1))
    cluster.check_cluster(cfg, (rollout.num_cpus_per_worker + cfg.reward.num_actors * cfg.reward.num_cpus,  # no learner
                                f"rollout.num_cpus_per_worker={rollout.num_cpus_per_worker:g} + reward.num_actors="
                                f"{cfg.reward.num_actors} x reward.num_cpus={cfg.reward.num_cpus:g}"))
    model_path = model_path or resolve_model(cfg.model, seed=cfg.trainer.seed)
    tokenizer = load_tokenizer(model_path)
    prompts = {source: eval_prompts(data_cfg, rows, model_path, tokenizer, cfg.rollout)
               for source, (data_cfg, rows) in sources.items()}
    return EvalPlan(cfg, rollout, model_path, prompts, k, temperature)


def run_eval(target: str, datasets: list[str], k: int, temperature: float, overrides: list[str]) -> dict:
    """Returns {dataset: {eval/pass@1, eval/pass@k, eval/temperature, ...}}."""
    return start_eval(check_eval(target, datasets, k, temperature, overrides))


def start_eval(plan: EvalPlan) -> dict:
    """Start (or join) the cluster, one engine group and the reward service, and score every dataset."""
    from rlsys.orchestration.actors import RewardClient, RolloutGroup  # ray, torch: only after the checks
    from rlsys.orchestration.stages import SeedScope, difficulty_accuracy, eval_metrics, eval_requests

    cfg, k, temperature = plan.cfg, plan.k, plan.temperature
    cluster.connect(cfg)
    rollout = RolloutGroup(plan.rollout, plan.model_path, cfg.model.dtype)
    reward = RewardClient(cfg.reward)
    report = {}
    try:
        for source, prompts in plan.prompts.items():
            requests = eval_requests(prompts, k, temperature, SeedScope(cfg.rollout.seed, "eval", 0))
            scored = reward.score(rollout.generate(requests, 0))
            report[source] = eval_metrics(scored, k, temperature) | difficulty_accuracy(scored)
    finally:
        rollout.shutdown()
        reward.shutdown()
    return report
