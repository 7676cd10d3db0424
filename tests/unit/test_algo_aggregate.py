"""Sharding-invariant aggregation (docs/algorithms.md#loss-aggregation; #checked-properties 2)."""
import pytest
import torch

from rlsys.algo.aggregate import AGG_MODES, aggregate, masked_global_sum
from rlsys.algo.loss import LossSpec

MODES = list(AGG_MODES)


def test_the_registry_is_what_config_and_loss_accept():
    # rlsys.config validates algo.loss_agg before torch is imported, against a mirror of the keys
    from rlsys.config import LOSS_AGG_MODES, ConfigError, load_config

    assert LOSS_AGG_MODES == tuple(AGG_MODES) == ("token_mean", "seq_mean_token_mean", "seq_sum_const")
    for mode in AGG_MODES:
        load_config(None, [f"algo.loss_agg={mode}"]).validate()
        LossSpec(agg_mode=mode)
    with pytest.raises(ConfigError, match="algo.loss_agg='sum'"):
        load_config(None, ["algo.loss_agg=sum"]).validate()
    with pytest.raises(ValueError, match="agg_mode='sum'"):
        LossSpec(agg_mode="sum")


def test_hand_worked_values():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    # token_mean: (1+2+3+4)/4 = 2.5
    assert aggregate(loss, mask, "token_mean", 4, 2).item() == pytest.approx(2.5)
    # seq_mean_token_mean: (6/3 + 4/1)/2 = 3.0
    assert aggregate(loss, mask, "seq_mean_token_mean", 4, 2).item() == pytest.approx(3.0)
    # seq_sum_const with L_c = 5: 10/(2*5) = 1.0
    assert aggregate(loss, mask, "seq_sum_const", 4, 2, const_len=5).item() == pytest.approx(1.0)


def _random_batch(B=11, T=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    loss = torch.randn(B, T, generator=g, dtype=torch.float64)
    lens = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lens[:, None]).double()
    return loss, mask


def _uneven_splits(B, k, seed):
    """k contiguous, non-empty, unequal-ish shards of range(B)."""
    g = torch.Generator().manual_seed(seed)
    cuts = sorted(torch.randperm(B - 1, generator=g)[: k - 1].add(1).tolist())
    bounds = [0] + cuts + [B]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_sum_over_k_ranks_equals_unsharded(mode, k):
    loss, mask = _random_batch(seed=k)
    N, S = int(mask.sum()), loss.shape[0]
    full = aggregate(loss, mask, mode, N, S, const_len=7)
    for seed in range(3):
        shards = _uneven_splits(loss.shape[0], k, seed)
        parts = [aggregate(loss[s], mask[s], mode, N, S, const_len=7) for s in shards]
        assert torch.allclose(torch.stack(parts).sum(), full, atol=1e-12)


def test_gradient_is_sharding_invariant():
    loss, mask = _random_batch(seed=9)
    x = loss.clone().requires_grad_(True)
    N, S = int(mask.sum()), x.shape[0]
    aggregate(x * x, mask, "seq_mean_token_mean", N, S).backward()
    g_full = x.grad.clone()
    x.grad = None
    for s in _uneven_splits(x.shape[0], 3, 0):  # micro-batch style: backward per shard, grads add
        aggregate(x[s] * x[s], mask[s], "seq_mean_token_mean", N, S).backward()
    assert torch.allclose(x.grad, g_full, atol=1e-12)


def test_masked_global_sum_and_errors():
    x = torch.tensor([[2.0, 4.0], [6.0, 8.0]])
    assert masked_global_sum(x, torch.tensor([[1, 0], [1, 1]]), 4).item() == pytest.approx(4.0)  # 16/4
    with pytest.raises(ValueError):
        aggregate(x, torch.ones(2, 2), "sum", 4, 2)
    with pytest.raises(ValueError):
        aggregate(x, torch.ones(2, 2), "seq_sum_const", 4, 2, const_len=0)
    with pytest.raises(ValueError):
        aggregate(x, torch.ones(2, 2), "token_mean", 0, 2)
