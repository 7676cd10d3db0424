"""The real DeepSpeed learner (2 ranks over gloo) without its behaviour pass equals the learner with it.

On an on-policy update (one mini-batch, old log-probs from the learner) ``learner.behaviour_pass=auto``
skips the no-grad pass and takes the old log-probs and entropy statistics from the training forward;
``always`` is the two-pass baseline. From the same initial weights, on the same batch, both give the
same loss and every other scalar, the same per-sample LearnerStats and, after the step, the same
parameters, bit for bit: under ZeRO-2, and under ZeRO-3 with a reference model (whose pass stays).
``learner/behaviour_pass`` says which path ran; stored old log-probs or 2 mini-batches keep the pass.
"""
from __future__ import annotations

import os
import warnings

import pytest
import torch

from tests.integration.test_learner_engine import free_port, make_batch, make_model, merge

pytestmark = pytest.mark.integration

WORLD = 2
# name -> (zero stage, reference-KL coefficient, behaviour_pass, mini-batches, stored old log-probs)
JOBS = {"z2_auto": (2, 0.0, "auto", 1, False), "z2_always": (2, 0.0, "always", 1, False),
        "z3ref_auto": (3, 0.01, "auto", 1, False), "z3ref_always": (3, 0.01, "always", 1, False),
        "z2_stored": (2, 0.0, "auto", 1, True), "z2_mini2": (2, 0.0, "auto", 2, False)}


def run_job(job, rank: int, port: int, model_dir: str) -> dict:
    import dataclasses

    from safetensors.torch import load as safetensors_load

    from rlsys.algo.loss import LossSpec
    from rlsys.config import LearnerConfig
    from rlsys.learner.engine import Learner

    stage, ref_kl_coef, mode, minis, stored = job
    cfg = LearnerConfig(num_ranks=WORLD, zero_stage=stage, backend="gloo", lr=1e-3, weight_decay=0.01, grad_clip=1.0,
                        mini_batches_per_step=minis, micro_batch_size=2, entropy_chunk_tokens=4, behaviour_pass=mode)
    learner = Learner(cfg, model_dir, LossSpec(eps_high=0.28, ref_kl_coef=ref_kl_coef))
    learner.setup(rank, WORLD, "127.0.0.1", port)
    batch = make_batch(1.0)
    if stored:  # as old_logprob_source=rollout: log-probs of an earlier policy, ratio != 1
        batch = dataclasses.replace(batch, old_logp_BT=torch.full_like(batch.loss_mask_BT, -3.5))
    stats = learner.train_step(batch.select(torch.arange(rank, batch.batch_size, WORLD)))
    state = learner.full_state_dict_bytes()
    del learner
    return {"stats": stats, "params": safetensors_load(state) if rank == 0 else None}


def worker(rank: int, port: int, model_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=r"`torch\.distributed\.", category=FutureWarning)
    results = {name: run_job(job, rank, port, model_dir) for name, job in JOBS.items()}
    torch.save(results, os.path.join(out_dir, f"results{rank}.pt"))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    import torch.multiprocessing as mp

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    root = tmp_path_factory.mktemp("single_pass")
    model_dir = str(root / "model")
    make_model(model_dir)
    mp.spawn(worker, args=(free_port(), model_dir, str(root)), nprocs=WORLD, join=True)
    per_rank = [torch.load(root / f"results{r}.pt", weights_only=False) for r in range(WORLD)]
    out = {name: {"stats": merge([p[name]["stats"] for p in per_rank]), "params": per_rank[0][name]["params"]}
           for name in JOBS}
    for name, r in out.items():
        print(f"\n{name}: train_step {r['stats'].scalars['perf/learner_seconds']:.3f} s")
    return out


@pytest.mark.parametrize("setting", ["z2", "z3ref"])
def test_the_single_pass_step_equals_the_two_pass_step(results, setting):
    one, two = results[f"{setting}_auto"], results[f"{setting}_always"]
    assert one["stats"].scalars["learner/behaviour_pass"] == 0.0
    assert two["stats"].scalars["learner/behaviour_pass"] == 1.0
    same = [k for k in two["stats"].scalars if not k.startswith("perf/") and k != "learner/behaviour_pass"]
    assert {k: one["stats"].scalars[k] for k in same} == {k: two["stats"].scalars[k] for k in same}
    assert one["stats"].scalars["learner/ppo_kl"] == 0.0  # ratio exactly 1
    for field in ("policy_version", "sample_index", "entropy_token_mean_per_sample", "num_tokens_per_sample",
                  "old_logp_per_sample"):
        assert getattr(one["stats"], field) == getattr(two["stats"], field), field
    assert [len(x) for x in one["stats"].old_logp_per_sample] == [5, 2, 6, 0, 4, 3]
    assert one["params"].keys() == two["params"].keys()
    for key, p in two["params"].items():
        assert torch.equal(one["params"][key], p), key  # the same update, bit for bit
    if setting == "z3ref":  # the reference-only pass fed the loss: KL to the initial weights ~ 0, not ~ log V
        assert abs(one["stats"].scalars["learner/ref_kl"]) < 1e-6


def test_the_pass_stays_when_the_update_is_not_on_policy(results):
    assert results["z2_stored"]["stats"].scalars["learner/behaviour_pass"] == 1.0
    assert results["z2_stored"]["stats"].scalars["learner/ppo_kl"] != 0.0  # against the stored log-probs
    assert results["z2_mini2"]["stats"].scalars["learner/behaviour_pass"] == 1.0
    assert results["z2_mini2"]["stats"].scalars["learner/mini_batches"] == 2
