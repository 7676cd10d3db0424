"""The one entropy definition and the chunked logp/entropy pass (docs/algorithms.md#token-entropy;
#checked-properties 1, 9)."""
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from rlsys.algo.entropy import entropy_from_logits, logp_and_entropy_chunked, logp_and_entropy_from_logits
from rlsys.algo.loss import LossSpec, policy_loss


def slow_entropy(logits_NV):
    """-sum p log p, one row and one vocabulary entry at a time."""
    out = []
    for row in logits_NV.double().tolist():
        m = max(row)
        z = sum(math.exp(x - m) for x in row)
        ps = [math.exp(x - m) / z for x in row]
        out.append(-sum(p * math.log(p) for p in ps if p > 0))
    return torch.tensor(out, dtype=torch.float64)


def test_entropy_matches_slow_loop():
    logits = torch.randn(6, 11, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.allclose(entropy_from_logits(logits).double(), slow_entropy(logits), atol=1e-5)


def test_entropy_uniform_is_log_v_and_one_hot_is_zero():
    # uniform over V = 7: H = log 7 = 1.9459
    assert entropy_from_logits(torch.zeros(2, 7)) == pytest.approx(math.log(7), abs=1e-6)
    # one-hot: all mass on one token. Large gap (p_other = e^-40 ~ 4e-18) and hard -inf masking
    big = torch.tensor([[40.0, 0.0, 0.0, 0.0]])
    masked = torch.tensor([[0.5, -math.inf, -math.inf, -math.inf]])
    assert entropy_from_logits(big).abs().item() < 1e-6
    assert entropy_from_logits(masked).item() == 0.0
    # masked logits stay NaN-free in backward too, whatever the upstream gradient
    partly = torch.tensor([[0.5, 0.2, -math.inf, 1.0]], requires_grad=True)
    (7.0 * entropy_from_logits(partly)).sum().backward()
    assert torch.isfinite(partly.grad).all() and partly.grad[0, 2].item() == 0.0
    # large shared offset: shifting first keeps the cancellation out (entropy is shift-invariant)
    # (z in multiples of 1/8 so that z + 1000 is exact in float32)
    z = torch.randint(-16, 16, (3, 9), generator=torch.Generator().manual_seed(2)) / 8.0
    assert torch.allclose(entropy_from_logits(z + 1000.0), entropy_from_logits(z), atol=1e-6)


def test_logp_from_logits_matches_log_softmax():
    z = torch.randn(5, 8, generator=torch.Generator().manual_seed(3))
    tgt = torch.tensor([0, 7, 3, 3, 1])
    logp, ent = logp_and_entropy_from_logits(z, tgt)
    ref = torch.log_softmax(z, -1)
    assert torch.allclose(logp, ref.gather(1, tgt[:, None]).squeeze(1), atol=1e-6)
    assert torch.allclose(ent, -(ref.exp() * ref).sum(-1), atol=1e-6)


def _problem(N=37, H=6, V=29, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, H, generator=g, dtype=dtype, requires_grad=True)
    weight = torch.randn(V, H, generator=g, dtype=dtype, requires_grad=True)
    target = torch.randint(0, V, (N,), generator=g)
    temp = 0.5 + torch.rand(N, generator=g)
    w_logp, w_ent = torch.randn(N, generator=g, dtype=dtype), torch.randn(N, generator=g, dtype=dtype)
    return hidden, weight, target, temp, w_logp, w_ent


def _naive(hidden, weight, target, temp):
    logits = (hidden @ weight.t()).float() / temp[:, None]
    return logp_and_entropy_from_logits(logits, target)


@pytest.mark.parametrize("chunk", [1, 5, 37, 100])
def test_chunked_matches_naive_values_and_grads(chunk):
    hidden, weight, target, temp, w_logp, w_ent = _problem()
    logp_c, ent_c = logp_and_entropy_chunked(hidden, weight, target, temp, chunk)
    ((logp_c * w_logp.float()).sum() + (ent_c * w_ent.float()).sum()).backward()
    gh_c, gw_c = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    logp_n, ent_n = _naive(hidden, weight, target, temp)
    ((logp_n * w_logp.float()).sum() + (ent_n * w_ent.float()).sum()).backward()
    assert torch.allclose(logp_c, logp_n, atol=1e-5) and torch.allclose(ent_c, ent_n, atol=1e-5)
    assert torch.allclose(gh_c, hidden.grad, atol=1e-4) and torch.allclose(gw_c, weight.grad, atol=1e-4)


@pytest.mark.parametrize("use", ["logp", "entropy"])
def test_chunked_grads_when_only_one_output_is_used(use):
    hidden, weight, target, temp, _, _ = _problem(N=9, seed=4)
    out_c = logp_and_entropy_chunked(hidden, weight, target, 1.3, 4)
    out_n = _naive(hidden, weight, target, torch.full((9,), 1.3))
    i = 0 if use == "logp" else 1
    gc = torch.autograd.grad(out_c[i].sum(), (hidden, weight))
    gn = torch.autograd.grad(out_n[i].sum(), (hidden, weight))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(gc, gn))


def test_chunked_float32_gradcheck_like():
    # float32 inputs (the learner's case): agree with naive to float32 precision
    hidden, weight, target, temp, _, _ = _problem(dtype=torch.float32, seed=5)
    lc, ec = logp_and_entropy_chunked(hidden, weight, target, temp, 8)
    gc = torch.autograd.grad(lc.sum() - 0.1 * ec.sum(), (hidden, weight))
    ln, en = _naive(hidden, weight, target, temp)
    gn = torch.autograd.grad(ln.sum() - 0.1 * en.sum(), (hidden, weight))
    assert all(torch.allclose(a, b, atol=1e-4, rtol=1e-4) for a, b in zip(gc, gn))


class LargestVocabTensor(TorchDispatchMode):
    """Records the largest numel of any tensor with last dim V produced by any op (fwd and bwd)."""

    def __init__(self, V):
        super().__init__()
        self.V, self.largest = V, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-1] == self.V:
                self.largest = max(self.largest, t.numel())
        return out


def test_chunked_never_holds_more_than_one_chunk_of_logits():
    # N = 37 tokens, V = 29, H = 6 < chunk: the weight's [H, V] view is smaller than one chunk.
    N, V, chunk = 37, 29, 7
    hidden, weight, target, temp, _, w_ent = _problem(N=N, V=V)
    with LargestVocabTensor(V) as probe:
        logp, ent = logp_and_entropy_chunked(hidden, weight, target, temp, chunk)
        (logp.sum() + (ent * w_ent.float()).sum()).backward()
    assert 0 < probe.largest <= chunk * V
    with LargestVocabTensor(V) as naive_probe:  # the probe does see a full [N, V] when one exists
        logp, ent = _naive(hidden, weight, target, temp)
        (logp.sum() + ent.sum()).backward()
    assert naive_probe.largest == N * V


def test_entropy_bonus_step_raises_entropy():
    # Property 9: toy softmax over V = 5 with peaked logits; one SGD step on the loss -lambda*H
    # (through policy_loss with A = 0 so only the bonus acts) increases H.
    z = torch.tensor([[3.0, 1.0, 0.0, -1.0, -2.0]], requires_grad=True)
    tgt = torch.tensor([0])
    logp, ent = logp_and_entropy_from_logits(z, tgt)
    h0 = ent.item()
    loss, diag = policy_loss(logp[None], logp.detach()[None], torch.zeros(1), torch.ones(1, 1), ent[None],
                             torch.tensor([0.1]), LossSpec(), global_num_tokens=1, global_num_seqs=1)
    assert diag["loss_entropy"].item() == pytest.approx(-0.1 * h0, rel=1e-6)
    loss.backward()
    with torch.no_grad():
        h1 = entropy_from_logits(z - 1.0 * z.grad).item()
    assert h1 > h0 + 1e-4
