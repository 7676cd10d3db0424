"""Rollout: sampling responses with vLLM and receiving new weights from the learner.

``engine.VLLMRolloutEngine`` is the plain class a Ray actor wraps; ``engine`` is the one module of
rlsys that imports vllm, so this package file must stay import-light: it imports neither vllm nor
ray, only the weight codec that both the learner (sender) and the vLLM worker (receiver) share.
"""
from __future__ import annotations

import safetensors.torch
import torch

WEIGHT_TRANSFER_STRATEGIES = ("serialized", "nccl")


def serialize_state_dict(state_dict: dict[str, torch.Tensor]) -> bytes:
    """Safetensors bytes of a full HF-named state dict (the ``serialized`` weight-transfer wire format).

    Every key is sent, moved to CPU and made contiguous. Tensors sharing storage with an earlier one
    (tied ``lm_head.weight`` / ``embed_tokens.weight``) are copied: safetensors refuses aliases.
    """
    plain: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        if t.untyped_storage().data_ptr() in storages:
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        plain[name] = t
    return safetensors.torch.save(plain)


def deserialize_state_dict(blob_or_path: bytes | str) -> dict[str, torch.Tensor]:
    """Inverse of ``serialize_state_dict``: CPU tensors keyed by HF parameter name.

    Takes the bytes, or the path of a file holding them (memory-mapped, no copy).
    """
    if isinstance(blob_or_path, str):
        return safetensors.torch.load_file(blob_or_path)
    return safetensors.torch.load(blob_or_path)
