"""``rlsys eval``: pass@1 and unbiased pass@k of a model on one or more datasets.

Starts (or joins) Ray, one vLLM rollout group and the reward service; no learner. The target is a
Hugging Face model dir, a run dir (its ``final/`` model), or a config YAML (its ``model.path``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from rlsys.config import Config, load_config
from rlsys.data.setup import build_prompt_sources
from rlsys.models.resolve import resolve_model
from rlsys.orchestration import cluster
from rlsys.orchestration.actors import RewardClient, RolloutGroup
from rlsys.orchestration.stages import difficulty_accuracy, eval_metrics, eval_requests


def resolve_target(target: str, overrides: list[str]) -> tuple[Config, str]:
    path = Path(target)
    if path.suffix in (".yaml", ".yml"):
        cfg = load_config(target, overrides)
        return cfg, resolve_model(cfg.model, seed=cfg.trainer.seed)
    cfg = load_config(None, overrides)
    for candidate in (path, path / "final"):
        if (candidate / "config.json").is_file():
            return cfg, str(candidate.resolve())
    raise FileNotFoundError(f"{target!r}: not a model dir (no config.json), a run dir with final/, or a .yaml config")


def run_eval(target: str, datasets: list[str], k: int, temperature: float, overrides: list[str]) -> dict:
    """Returns {dataset: {eval/pass@1, eval/pass@k, eval/temperature, ...}}."""
    if k < 1:
        raise ValueError(f"--k={k}: must be >= 1")
    cfg, model_path = resolve_target(target, overrides)
    datasets = datasets or [cfg.data.source]
    cluster.connect(cfg)
    rollout_cfg = dataclasses.replace(cfg.rollout, num_workers=min(cfg.rollout.num_workers, 1))
    rollout = RolloutGroup(rollout_cfg, model_path, cfg.model.dtype)
    reward = RewardClient(cfg.reward)
    report = {}
    try:
        for source in datasets:
            data_cfg = dataclasses.replace(cfg.data, source=source, num_eval=0, prompts_per_step=1)
            stream, _ = build_prompt_sources(data_cfg, model_path)
            prompts = stream.all_prompts()
            scored = reward.score(rollout.generate(eval_requests(prompts, k, temperature), 0))
            report[source] = eval_metrics(scored, k, temperature) | difficulty_accuracy(scored)
    finally:
        rollout.shutdown()
        reward.shutdown()
    return report
