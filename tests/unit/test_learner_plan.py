"""The learner's step plan: global mini-batches by sample index, equal micro-batch and chunk counts."""
from __future__ import annotations

from rlsys.learner.plan import MicroBatch, ShardInfo, plan_pass, plan_update

# 5 samples dealt round-robin to 2 ranks; response tokens per sample index: 0:3 1:4 2:0 3:1 4:2
SHARDS = [ShardInfo(sample_index=(0, 2, 4), num_tokens=(3, 0, 2)),
          ShardInfo(sample_index=(1, 3), num_tokens=(4, 1))]


def test_update_plan_by_hand():
    # 2 mini-batches of the index-sorted batch, sizes 3 and 2: {0, 1, 2} and {3, 4}.
    # mini 0: tokens 3 + 4 + 0 = 7, sequences with tokens 2 (sample 2 is empty).
    #   rank 0 rows (0, 1) [indices 0, 2], rank 1 row (0,) [index 1]; micro size 1 -> 2 micro-batches,
    #   rank 1's second is an empty placeholder. Chunks of 2 tokens: micro 0 max(ceil(3/2), ceil(4/2)) = 2;
    #   micro 1 max(chunks for 0 tokens = 1, empty = 1) = 1.
    # mini 1: tokens 1 + 2 = 3, sequences 2; rank 0 row (2,) [index 4], rank 1 row (1,) [index 3];
    #   one micro-batch, chunks max(ceil(2/2), ceil(1/2)) = 1.
    for rank, micro0, micro1 in ((0, ((0,), (1,)), ((2,),)), (1, ((0,), ()), ((1,),))):
        minis = plan_update(SHARDS, rank, num_mini_batches=2, micro_batch_size=1, chunk_tokens=2)
        assert [(m.num_tokens, m.num_seqs) for m in minis] == [(7, 2), (3, 2)]
        assert tuple(mb.rows for mb in minis[0].micro) == micro0
        assert tuple(mb.rows for mb in minis[1].micro) == micro1
        assert [mb.num_chunks for mb in minis[0].micro] == [2, 1]
        assert [mb.num_chunks for mb in minis[1].micro] == [1]


def test_mini_batches_do_not_depend_on_sharding():
    """The same 5 samples on one rank give the same mini-batch membership and counts."""
    whole = [ShardInfo(sample_index=(0, 1, 2, 3, 4), num_tokens=(3, 4, 0, 1, 2))]
    minis = plan_update(whole, 0, num_mini_batches=2, micro_batch_size=8, chunk_tokens=2)
    assert [(m.num_tokens, m.num_seqs) for m in minis] == [(7, 2), (3, 2)]
    assert [mb.rows for mb in minis[0].micro] == [(0, 1, 2)]
    assert [mb.rows for mb in minis[1].micro] == [(3, 4)]


def test_pass_plan_and_empty_shard():
    # rank 1 holds nothing: it still runs as many micro-batches as rank 0 (ceil(3 / 2) = 2), all empty
    shards = [ShardInfo(sample_index=(0, 1, 2), num_tokens=(5, 5, 5)), ShardInfo((), ())]
    assert plan_pass(shards, 1, micro_batch_size=2, chunk_tokens=4) == (
        MicroBatch(rows=(), num_chunks=3), MicroBatch(rows=(), num_chunks=2))  # ceil(10/4), ceil(5/4)
    assert [mb.rows for mb in plan_pass(shards, 0, 2, 4)] == [(0, 1), (2,)]
    # more mini-batches than samples: the extra ones are empty (0 tokens) and get skipped by the learner
    minis = plan_update(shards, 0, num_mini_batches=4, micro_batch_size=2, chunk_tokens=4)
    assert [m.num_tokens for m in minis] == [5, 5, 5, 0]


def test_learner_package_is_import_light():
    """rlsys.learner, its forward and its plan import without deepspeed, ray or vllm."""
    import subprocess
    import sys

    code = ("import sys\nimport rlsys.learner, rlsys.learner.forward, rlsys.learner.plan\n"
            "bad = [m for m in ('deepspeed', 'ray', 'vllm') if m in sys.modules]\nassert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
