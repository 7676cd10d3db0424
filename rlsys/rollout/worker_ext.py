"""Methods rlsys adds to vLLM's worker, reached through ``LLM.collective_rpc("rlsys_...")``.

vLLM loads this class by dotted path (``worker_extension_cls``) inside its worker process and mixes
it into its ``Worker``, so ``self`` is the worker (it has ``reload_weights`` and ``model_runner``).
Method names carry an ``rlsys_`` prefix because the worker already has ``update_weights`` etc.
Imports neither vllm (the worker process already has it; we only call worker methods) nor ray.
"""
from __future__ import annotations

import torch

from rlsys.rollout import deserialize_state_dict


class RlsysWorkerExtension:
    """Mixed into vLLM's Worker; every method runs once per worker (per tensor-parallel rank)."""

    def rlsys_load_weights(self, blob_or_path: bytes | str) -> int:
        """Load a full HF state dict in place; returns the number of tensors loaded.

        Takes ``serialize_state_dict`` bytes, or the path of a same-host file holding them (the
        engine's fast path: 600 MB of bytes through vLLM's RPC queues take ~10 s on CPU). Never raw
        tensors: on CPU vLLM's message queue turns them into lists. ``reload_weights`` takes
        checkpoint-format (HF) names and lets the model's own ``load_weights`` fuse qkv / gate-up
        projections and shard for tensor parallelism.
        """
        state_dict = deserialize_state_dict(blob_or_path)
        self.reload_weights(weights_iterator=iter(state_dict.items()), is_checkpoint_format=True)
        return len(state_dict)

    def rlsys_weight_checksum(self) -> float:
        """Sum of every served parameter in float64 (debugging: did the weights change?)."""
        model = self.model_runner.get_model()
        with torch.no_grad():
            return float(sum(p.detach().double().sum().item() for p in model.parameters()))
