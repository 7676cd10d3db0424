"""Model forward -> per-token log-prob and exact entropy of the next token, chunked over tokens.

The base model runs once; the LM head, the temperature and the softmax run chunk by chunk under
non-reentrant activation checkpointing, so no float32 [tokens x vocab] tensor larger than one chunk
exists, in forward or in backward. Pure torch (+ rlsys.algo.entropy); must not import deepspeed.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch.utils.checkpoint import checkpoint

from rlsys.algo.entropy import logp_and_entropy_from_logits


def response_logp_and_entropy(
    model: torch.nn.Module,
    input_ids_BT: torch.Tensor,
    attention_mask_BT: torch.Tensor,
    temperature_B: torch.Tensor,
    chunk_tokens: int,
    *,
    positions_BT: Optional[torch.Tensor] = None,
    num_chunks: Optional[int] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob and exact entropy of token t+1 given tokens <= t, at each sample's temperature.

    ``model`` is a HF causal LM with ``.model`` (the decoder, returning ``last_hidden_state``) and
    ``.lm_head`` (called as a module, so ZeRO-3's parameter-gathering hooks fire). Returns
    ``(logp_BT1, entropy_BT1)``, float32 [B, T-1], aligned with ``input_ids_BT[:, 1:]``.
    Only positions where ``positions_BT`` ([B, T-1], nonzero = compute) is set are computed; the
    others are 0 (default: all positions). ``num_chunks`` (default ``ceil(N / chunk_tokens)``)
    fixes how many times the LM head is called: under ZeRO-3 every call is a collective parameter
    gather, so data-parallel ranks must agree on it. It must be >= ``ceil(N / chunk_tokens)``.
    """
    B, T = input_ids_BT.shape
    position_ids_BT = (attention_mask_BT.long().cumsum(dim=1) - 1).clamp(min=0)
    hidden_BTH = model.model(input_ids=input_ids_BT, attention_mask=attention_mask_BT,
                             position_ids=position_ids_BT, use_cache=False).last_hidden_state
    hidden_NH = hidden_BTH[:, :-1].reshape(B * (T - 1), -1)
    target_N = input_ids_BT[:, 1:].reshape(-1)
    temp_N = temperature_B.to(torch.float32)[:, None].expand(B, T - 1).reshape(-1)
    if positions_BT is None:
        flat_index_N = torch.arange(B * (T - 1), device=input_ids_BT.device)
    else:
        flat_index_N = positions_BT.reshape(-1).nonzero(as_tuple=True)[0]
    logp_N, entropy_N = _chunked(model.lm_head, hidden_NH[flat_index_N], target_N[flat_index_N],
                                 temp_N[flat_index_N], chunk_tokens, num_chunks)
    logp_BT1 = _scatter(logp_N, flat_index_N, B, T - 1)
    entropy_BT1 = _scatter(entropy_N, flat_index_N, B, T - 1)
    return logp_BT1, entropy_BT1


def chunks_needed(num_tokens: int, chunk_tokens: int) -> int:
    """LM-head calls for ``num_tokens`` positions (at least 1: the head is always called once)."""
    return max(1, math.ceil(num_tokens / chunk_tokens))


def _chunked(lm_head: torch.nn.Module, hidden_NH: torch.Tensor, target_N: torch.Tensor,
             temp_N: torch.Tensor, chunk_tokens: int, num_chunks: Optional[int]):
    """Exactly ``num_chunks`` non-empty LM-head calls over N rows (zero rows pad N up if needed)."""
    N = hidden_NH.shape[0]
    num_chunks = chunks_needed(N, chunk_tokens) if num_chunks is None else num_chunks
    if num_chunks < chunks_needed(N, chunk_tokens):
        raise ValueError(f"num_chunks={num_chunks} < ceil({N} tokens / chunk_tokens={chunk_tokens})")
    chunk_len = max(1, math.ceil(N / num_chunks))
    pad = num_chunks * chunk_len - N
    # Padding rows (hidden 0, target 0, temperature 1) keep every call non-empty, so each chunk's
    # forward and its recomputation in backward really call the head; their outputs are dropped.
    hidden_NH = torch.cat([hidden_NH, hidden_NH.new_zeros(pad, hidden_NH.shape[1])])
    target_N = torch.cat([target_N, target_N.new_zeros(pad)])
    temp_N = torch.cat([temp_N, temp_N.new_ones(pad)])
    logps, entropies = [], []
    for c in range(num_chunks):
        rows = slice(c * chunk_len, (c + 1) * chunk_len)
        args = (lm_head, hidden_NH[rows], target_N[rows], temp_N[rows])
        if torch.is_grad_enabled():
            logp_C, entropy_C = checkpoint(_head_logp_entropy, *args, use_reentrant=False)
        else:
            logp_C, entropy_C = _head_logp_entropy(*args)
        logps.append(logp_C)
        entropies.append(entropy_C)
    return torch.cat(logps)[:N], torch.cat(entropies)[:N]


def _head_logp_entropy(lm_head: torch.nn.Module, hidden_CH: torch.Tensor, target_C: torch.Tensor,
                       temp_C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits_CV = lm_head(hidden_CH).float() / temp_C[:, None]
    return logp_and_entropy_from_logits(logits_CV, target_C)


def _scatter(values_N: torch.Tensor, flat_index_N: torch.Tensor, B: int, T1: int) -> torch.Tensor:
    out = values_N.new_zeros(B * T1)
    return out.index_put((flat_index_N,), values_N).reshape(B, T1)
