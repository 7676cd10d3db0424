"""Learner step time without the behaviour pass (``learner.behaviour_pass=auto``, on-policy) against the
two-pass baseline (``always``), on the demo's shape.

Two DeepSpeed ZeRO-2 ranks over gloo (plain spawned processes, 1 torch thread each, as the demo's
actors), the demo's model (``builtin:tiny-arith``) and learner settings (micro-batch 128, one
mini-batch), a batch of the demo's size: 32 real arithmetic prompts x 8 responses of 1-8 random
tokens. One learner runs ``train_step`` on that batch with the two settings alternating (so drift of
the machine hits both alike), after warm-up steps of each; the time is ``perf/learner_seconds`` (the
slower rank). The ratio uses the minimum (benchmarks/common.py). Usage:
``python benchmarks/bench_learner_pass.py [--repeats N] [--quick]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import new_figure, relpath, save_figure, write_json  # noqa: E402

MODES = ("always", "auto")  # baseline first
P, G, MAX_NEW = 32, 8, 8


def demo_batch(model_path: str, vocab_size: int):
    """The demo's P*G = 256 samples: real prompts, responses of 1..8 random tokens, GRPO-like advantages."""
    from rlsys.config import load_config
    from rlsys.data.setup import build_prompt_sources
    from rlsys.types import TrainBatch

    cfg = load_config(str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"))
    prompts = build_prompt_sources(cfg.data, model_path)[0].next_batch().prompts[:P]
    g = torch.Generator().manual_seed(0)
    rows = [(list(p.token_ids), torch.randint(4, vocab_size, (int(torch.randint(1, MAX_NEW + 1, (1,), generator=g)),),
                                              generator=g).tolist()) for p in prompts for _ in range(G)]
    B, T = len(rows), max(len(a) + len(b) for a, b in rows)
    input_ids_BT = torch.zeros(B, T, dtype=torch.long)
    attention_mask_BT = torch.zeros(B, T, dtype=torch.long)
    loss_mask_BT = torch.zeros(B, T - 1)
    for b, (prompt, response) in enumerate(rows):
        L, R = len(prompt), len(response)
        input_ids_BT[b, :L + R] = torch.tensor(prompt + response)
        attention_mask_BT[b, :L + R] = 1
        loss_mask_BT[b, L - 1:L - 1 + R] = 1
    adv_B = torch.randn(B, generator=g)
    return TrainBatch(input_ids_BT=input_ids_BT, attention_mask_BT=attention_mask_BT, loss_mask_BT=loss_mask_BT,
                      old_logp_BT=None, adv_B=adv_B, entropy_coef_B=torch.zeros(B), temperature_B=torch.ones(B),
                      sample_index_B=torch.arange(B), policy_version=0,
                      global_num_tokens=int(loss_mask_BT.sum()), global_num_seqs=B)


def rank_main(rank: int, world: int, port: int, model_path: str, warmup: int, repeats: int, out: str) -> None:
    import warnings

    from transformers import AutoConfig

    from rlsys.algo.loss import LossSpec
    from rlsys.config import load_config
    from rlsys.learner.engine import Learner

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=r"`torch\.distributed\.", category=FutureWarning)
    demo = load_config(str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"))
    cfg = dataclasses.replace(demo.learner, backend="gloo")
    learner = Learner(cfg, model_path, LossSpec(eps_low=demo.algo.eps_low, eps_high=demo.algo.eps_high))
    learner.setup(rank, world, "127.0.0.1", port)
    batch = demo_batch(model_path, AutoConfig.from_pretrained(model_path).vocab_size)
    shard = batch.select(torch.arange(rank, batch.batch_size, world))
    seconds: dict[str, list[float]] = {m: [] for m in MODES}
    passes: dict[str, float] = {}
    for i in range(warmup + repeats):
        for mode in MODES:
            learner.cfg = dataclasses.replace(cfg, behaviour_pass=mode)  # a benchmark-only switch between steps
            stats = learner.train_step(shard)
            passes[mode] = stats.scalars["learner/behaviour_pass"]
            if i >= warmup:
                seconds[mode].append(stats.scalars["perf/learner_seconds"])
    if rank == 0:
        torch.save({"seconds": seconds, "behaviour_pass": passes, "num_tokens": batch.global_num_tokens,
                    "T": int(batch.input_ids_BT.shape[1])}, out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(quick: bool = False, repeats: int = 10) -> dict:
    import torch.multiprocessing as mp

    from rlsys.config import ModelConfig
    from rlsys.models.resolve import resolve_model

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    repeats, warmup = (3, 1) if quick else (repeats, 2)
    model_path = resolve_model(ModelConfig(path="builtin:tiny-arith", cache_dir=str(Path(".cache/rlsys").resolve())))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rank0.pt")
        mp.spawn(rank_main, args=(2, free_port(), model_path, warmup, repeats, out), nprocs=2, join=True)
        res = torch.load(out, weights_only=False)
    seconds = res["seconds"]
    summary = {m: {"min_s": round(min(v), 4), "median_s": round(statistics.median(v), 4)} for m, v in seconds.items()}
    ratios = {"single_over_two_pass_min": round(min(seconds["auto"]) / min(seconds["always"]), 3),
              "single_over_two_pass_median": round(statistics.median(seconds["auto"])
                                                   / statistics.median(seconds["always"]), 3)}
    payload = {"shape": {"prompts": P, "samples_per_prompt": G, "max_new_tokens": MAX_NEW, "ranks": 2,
                         "response_tokens": res["num_tokens"], "T": res["T"], "model": "builtin:tiny-arith"},
               "behaviour_pass_metric": res["behaviour_pass"], "warmup": warmup, "repeats": repeats,
               "seconds": seconds, "summary": summary, "ratios": ratios}
    path = write_json("learner_pass", payload)
    fig, (ax_bar, ax_rep) = new_figure(2)
    labels = ["two-pass (always)", "single pass (auto)"]
    ax_bar.bar(labels, [summary[m]["median_s"] for m in MODES], yerr=None)
    ax_bar.set(title="learner step, median (s)", ylabel="s")
    for m, label in zip(MODES, labels):
        ax_rep.plot(range(1, len(seconds[m]) + 1), seconds[m], marker="o", label=label)
    ax_rep.set(title="each step (alternating)", xlabel="repeat", ylabel="s")
    ax_rep.legend()
    fig.suptitle(f"learner step on the demo shape ({P}x{G}, <= {MAX_NEW} new tokens, 2 ranks): "
                 f"ratio {ratios['single_over_two_pass_median']}")
    png = save_figure(fig, "learner_pass")
    print(f"wrote {relpath(path)} and {relpath(png)}: {summary} {ratios}")
    return ratios


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats (a smoke run)")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    main(args.quick, args.repeats)
