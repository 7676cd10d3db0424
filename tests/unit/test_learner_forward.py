"""The chunked learner forward equals the naive full-logits computation, values and gradients.

A tiny random Qwen2 (2 layers, hidden 64, vocab 40) stands in for the policy. The reference takes the
model's full logits [B, T, V], divides by each sample's temperature and computes log-softmax and
-sum p log p directly (an independent definition from rlsys.algo.entropy's logsumexp form).
"""
from __future__ import annotations

import math

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from rlsys.learner.forward import chunks_needed, response_logp_and_entropy

V = 40


def tiny_qwen2() -> Qwen2ForCausalLM:
    """A seeded 2-layer Qwen2 with vocabulary V, in eval mode (the learner tests' model)."""
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False)
    return Qwen2ForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def model():
    return tiny_qwen2()


def batch():
    """3 right-padded samples of lengths 9, 6, 4 (T = 9); temperatures 1.0, 0.7, 1.3."""
    g = torch.Generator().manual_seed(1)
    lengths = [9, 6, 4]
    input_ids_BT = torch.randint(0, V, (3, 9), generator=g)
    attention_mask_BT = torch.zeros(3, 9, dtype=torch.long)
    for b, n in enumerate(lengths):
        attention_mask_BT[b, :n] = 1
        input_ids_BT[b, n:] = 0
    # response tokens: positions t predict token t+1; prompts of length 3, 2, 2
    positions_BT1 = torch.zeros(3, 8)
    positions_BT1[0, 2:8] = 1  # 6 response tokens
    positions_BT1[1, 1:5] = 1  # 4
    positions_BT1[2, 1:3] = 1  # 2  -> N = 12 positions
    return input_ids_BT, attention_mask_BT, torch.tensor([1.0, 0.7, 1.3]), positions_BT1


def naive(model, input_ids_BT, attention_mask_BT, temperature_B):
    position_ids = (attention_mask_BT.cumsum(1) - 1).clamp(min=0)
    logits_BTV = model(input_ids=input_ids_BT, attention_mask=attention_mask_BT,
                       position_ids=position_ids).logits[:, :-1].float()
    logits_BTV = logits_BTV / temperature_B[:, None, None]
    logp_all_BTV = torch.log_softmax(logits_BTV, dim=-1)
    logp_BT1 = logp_all_BTV.gather(-1, input_ids_BT[:, 1:, None]).squeeze(-1)
    entropy_BT1 = -(logp_all_BTV.exp() * logp_all_BTV).sum(-1)
    return logp_BT1, entropy_BT1


def weighted_sum(logp_BT1, entropy_BT1, mask_BT1):
    # arbitrary fixed weights so both outputs feed the gradient
    w = torch.linspace(-1.0, 1.0, logp_BT1.numel()).reshape(logp_BT1.shape)
    return ((w * logp_BT1 + 0.3 * entropy_BT1) * mask_BT1).sum()


def grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("chunk_tokens,num_chunks", [(5, None), (12, None), (100, None), (5, 7)])
def test_chunked_matches_naive_values_and_grads(model, chunk_tokens, num_chunks):
    ids, att, temp, pos = batch()
    ref_logp, ref_ent = naive(model, ids, att, temp)
    ref_grads = grads(model, weighted_sum(ref_logp, ref_ent, pos))
    logp, ent = response_logp_and_entropy(model, ids, att, temp, chunk_tokens,
                                          positions_BT=pos, num_chunks=num_chunks)
    assert logp.shape == ent.shape == (3, 8)
    on = pos > 0
    torch.testing.assert_close(logp[on], ref_logp[on], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent[on], ref_ent[on], rtol=1e-5, atol=1e-5)
    assert (logp[~on] == 0).all() and (ent[~on] == 0).all()  # positions not asked for are not computed
    got = grads(model, weighted_sum(logp, ent, pos))
    for name, g in ref_grads.items():
        torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_all_positions_and_no_grad_path(model):
    ids, att, temp, _ = batch()
    ref_logp, ref_ent = naive(model, ids, att, temp)
    with torch.no_grad():
        logp, ent = response_logp_and_entropy(model, ids, att, temp, chunk_tokens=7)
    valid = att[:, 1:] > 0  # predicted token is a real token
    torch.testing.assert_close(logp[valid], ref_logp[valid], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent[valid], ref_ent[valid], rtol=1e-5, atol=1e-5)


def test_lm_head_called_exactly_num_chunks_times(model):
    """ZeRO-3 ranks must agree on the number of LM-head calls: 12 tokens, chunk 5 -> ceil(12/5) = 3
    calls of ceil(12/3) = 4 rows by default; num_chunks=7 forces 7 calls of ceil(12/7) = 2 rows
    (14 rows, the last 2 padding), in forward and again in backward."""
    ids, att, temp, pos = batch()
    rows = []
    handle = model.lm_head.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    try:
        response_logp_and_entropy(model, ids, att, temp, 5, positions_BT=pos)
        assert rows == [4, 4, 4] and chunks_needed(12, 5) == 3
        rows.clear()
        logp, ent = response_logp_and_entropy(model, ids, att, temp, 5, positions_BT=pos, num_chunks=7)
        assert rows == [2] * 7
        rows.clear()
        weighted_sum(logp, ent, pos).backward()
        assert rows == [2] * 7  # checkpoint recomputes each chunk once in backward
        rows.clear()
        empty = torch.zeros_like(pos)
        response_logp_and_entropy(model, ids, att, temp, 5, positions_BT=empty, num_chunks=2)
        assert rows == [1, 1]  # no tokens on this rank: still 2 calls of one padding row
    finally:
        handle.remove()
    with pytest.raises(ValueError):
        response_logp_and_entropy(model, ids, att, temp, 5, positions_BT=pos, num_chunks=2)


def test_no_vocab_sized_tensor_is_kept_for_backward(model):
    """Tensors autograd saves outside the checkpointed chunks never have a vocab-sized last dim;
    the naive computation saves [B, T, V] ones (shows the probe works)."""
    ids, att, temp, pos = batch()

    def saved_last_dims(fn):
        dims = []

        def pack(t):
            dims.append(tuple(t.shape))
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        return [d for d in dims if len(d) >= 2 and d[-1] == V and math.prod(d[:-1]) > 4]

    assert saved_last_dims(lambda: naive(model, ids, att, temp))
    assert not saved_last_dims(lambda: response_logp_and_entropy(model, ids, att, temp, 4, positions_BT=pos))
