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

    Tensors are moved to CPU and made contiguous; shared storage (tied embeddings) is copied, since
    safetensors refuses aliased tensors.
    """
    plain: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        if t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        plain[name] = t
    return safetensors.torch.save(plain)


def deserialize_state_dict(blob: bytes) -> dict[str, torch.Tensor]:
    """Inverse of ``serialize_state_dict``: CPU tensors keyed by HF parameter name."""
    return safetensors.torch.load(blob)
