"""Map ``model.path`` to a local HF model directory, building the built-in models on first use.

Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

from pathlib import Path

from rlsys.config import ModelConfig

BUILTIN_MODELS = ("builtin:tiny-arith", "builtin:smollm2-135m")


def resolve_model(cfg: ModelConfig, seed: int = 0) -> str:
    if cfg.path == "builtin:tiny-arith":
        from rlsys.models.tiny import ensure_tiny_model

        return str(Path(ensure_tiny_model(cfg.cache_dir, seed=seed)).resolve())
    if cfg.path == "builtin:smollm2-135m":
        from rlsys.models.smollm2 import ensure_smollm2

        return str(Path(ensure_smollm2(cfg.cache_dir)).resolve())
    if cfg.path.startswith("builtin:"):
        raise ValueError(f"model.path={cfg.path!r}: unknown built-in model; known: {BUILTIN_MODELS}")
    if not (Path(cfg.path) / "config.json").is_file():
        raise ValueError(f"model.path={cfg.path!r}: no config.json there (expected a Hugging Face model dir)")
    return str(Path(cfg.path).resolve())
