"""The one entropy definition (docs/algorithms.md#token-entropy; #checked-properties 1, 9). The learner's
chunked pass over it is checked against full logits in tests/unit/test_learner_forward.py."""
import math

import pytest
import torch

from rlsys.algo.entropy import entropy_from_logits, logp_and_entropy_from_logits
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
