"""The learner skips its no-grad behaviour pass only when the update is on-policy, and then loses nothing.

``plan.needs_behaviour_pass`` is the one place the choice is made; this checks each of its cases.
The skip is exact because (a) one mini-batch has the very micro-batches of the behaviour pass, and
(b) the forward with gradients gives bit for bit the log-probs and entropies of the no-grad forward, so
the policy loss with old log-probs = its own detached log-probs has the loss and the gradients of the
loss with the behaviour pass's old log-probs. The real DeepSpeed learner is compared end to end in
tests/integration/test_learner_single_pass.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlsys.algo.loss import LossSpec, policy_loss
from rlsys.learner.forward import response_logp_and_entropy
from rlsys.learner.plan import ShardInfo, needs_behaviour_pass, plan_pass, plan_update
from tests.unit.test_learner_forward import V, tiny_qwen2

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")
# 5 samples dealt round-robin to 2 ranks (as tests/unit/test_learner_plan.py)
SHARDS = [ShardInfo(sample_index=(0, 2, 4), num_tokens=(3, 0, 2)),
          ShardInfo(sample_index=(1, 3), num_tokens=(4, 1))]


def with_stored(shards: list[ShardInfo], ranks: set[int]) -> list[ShardInfo]:
    return [ShardInfo(s.sample_index, s.num_tokens, stored_old_logp=r in ranks) for r, s in enumerate(shards)]


@pytest.mark.parametrize("mode, mini_batches, stored_on, expected, case", [
    ("auto", 1, set(), False, "on-policy: one mini-batch, old log-probs from the learner"),
    ("always", 1, set(), True, "forced: the two-pass baseline"),
    ("auto", 2, set(), True, "mini-batch 2 is forwarded after an optimiser step"),
    ("auto", 1, {0, 1}, True, "stored old log-probs (old_logprob_source=rollout, or a replay update)"),
    ("auto", 1, {1}, True, "stored on another rank only: every rank decides alike"),
])
def test_the_pass_is_skipped_only_for_an_on_policy_update(mode, mini_batches, stored_on, expected, case):
    assert needs_behaviour_pass(mode, mini_batches, with_stored(SHARDS, stored_on)) is expected, case


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="behaviour_pass='sometimes'"):
        needs_behaviour_pass("sometimes", 1, SHARDS)


def test_the_config_key_is_validated():
    from rlsys.config import ConfigError, load_config

    assert load_config(DEMO).learner.behaviour_pass == "auto"
    load_config(DEMO, ["learner.behaviour_pass=always"]).validate()
    with pytest.raises(ConfigError, match=r"learner\.behaviour_pass"):
        load_config(DEMO, ["learner.behaviour_pass=never"]).validate()


@pytest.mark.parametrize("micro_batch_size, chunk_tokens", [(1, 2), (2, 3), (8, 1)])
def test_one_mini_batch_has_the_micro_batches_of_the_behaviour_pass(micro_batch_size, chunk_tokens):
    """Same rows, same order, same LM-head chunk counts: the training forward sees the same inputs."""
    for rank in (0, 1):
        (mini,) = plan_update(SHARDS, rank, 1, micro_batch_size, chunk_tokens)
        assert mini.micro == plan_pass(SHARDS, rank, micro_batch_size, chunk_tokens)


@pytest.fixture(scope="module")
def model():
    return tiny_qwen2()


def micro_batch():
    """4 right-padded samples (lengths 9, 7, 5, 4; prompts of 3, 2, 2, 3 tokens), temperatures 1.0, 0.7, 1.3, 1.0."""
    g = torch.Generator().manual_seed(3)
    lengths, prompts = [9, 7, 5, 4], [3, 2, 2, 3]
    input_ids_BT = torch.randint(1, V, (4, 9), generator=g)
    attention_mask_BT = torch.zeros(4, 9, dtype=torch.long)
    positions_BT1 = torch.zeros(4, 8)
    for b, (n, L) in enumerate(zip(lengths, prompts)):
        attention_mask_BT[b, :n] = 1
        input_ids_BT[b, n:] = 0
        positions_BT1[b, L - 1:n - 1] = 1
    return input_ids_BT, attention_mask_BT, torch.tensor([1.0, 0.7, 1.3, 1.0]), positions_BT1


def loss_and_grads(model, old_logp_fn):
    """policy_loss of one micro-batch (chunked head, 2 chunks) and the gradients it leaves on the model."""
    ids, attn, temp, pos = micro_batch()
    model.zero_grad(set_to_none=True)
    logp, entropy = response_logp_and_entropy(model, ids, attn, temp, 8, positions_BT=pos, num_chunks=2)
    spec = LossSpec(eps_low=0.2, eps_high=0.28)
    n_tok = int(pos.sum())
    loss, diag = policy_loss(logp, old_logp_fn(logp), torch.tensor([1.0, -0.5, 0.8, -1.2]), pos, entropy,
                             torch.tensor([0.0, 0.01, 0.02, 0.0]), spec, n_tok, 4)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), {k: v for k, v in diag.items()}, logp.detach(), entropy.detach(), grads


def test_the_training_forward_is_the_behaviour_pass_and_gives_the_same_loss_and_gradients(model):
    ids, attn, temp, pos = micro_batch()
    with torch.no_grad():  # the behaviour pass
        old_logp, old_entropy = response_logp_and_entropy(model, ids, attn, temp, 8, positions_BT=pos, num_chunks=2)
    two = loss_and_grads(model, lambda logp: old_logp)
    one = loss_and_grads(model, lambda logp: logp.detach())
    # the training forward's values are the behaviour pass's, bit for bit: the LearnerStats agree
    assert torch.equal(two[2], old_logp) and torch.equal(one[2], old_logp)
    assert torch.equal(one[3], old_entropy)
    assert torch.equal(one[0], two[0])  # loss
    assert one[1].keys() == two[1].keys() and all(torch.equal(one[1][k], two[1][k]) for k in one[1])
    assert float(one[1]["ppo_kl"]) == 0.0 and float(one[1]["clipfrac_upper"]) == 0.0  # ratio exactly 1
    assert one[4].keys() == two[4].keys() and len(one[4]) == len(list(model.parameters()))
    assert all(torch.equal(one[4][k], two[4][k]) for k in one[4])
    assert any(bool(g.abs().sum() > 0) for g in one[4].values())
