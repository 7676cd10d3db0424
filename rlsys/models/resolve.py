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


def write_hf_model(state_dict_bytes: bytes, base_model_path: str, out_dir: str | Path) -> Path:
    """A Hugging Face model dir with the given safetensors weights and the base model's config/tokenizer."""
    import shutil

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in Path(base_model_path).iterdir():
        if f.is_file() and not f.name.endswith((".safetensors", ".bin")) and not f.name.startswith("."):
            shutil.copy2(f, tmp / f.name)
    from safetensors.torch import load, save_file

    save_file(load(state_dict_bytes), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
