"""Per-rank memory of the learner under ZeRO-3 (model built partitioned) against ZeRO-2, at 1 and 2 ranks.

For each (stage, ranks) it starts a real ``LearnerGroup`` (DeepSpeed over gloo in Ray actors) on
SmolLM2-135M (``builtin:smollm2-135m``, fp32) and reads, per rank: the parameter bytes it holds
(``LearnerGroup.param_bytes``) and its peak resident memory (``VmHWM`` of the actor process, which
includes the model build and the DeepSpeed setup). The ratios are against ZeRO-2 at the same rank
count, measured in the same run. Usage: ``python benchmarks/bench_zero3_memory.py [--model PATH]``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import new_figure, relpath, save_figure, write_json  # noqa: E402


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def measure(model_path: str, stage: int, ranks: int) -> dict:
    from rlsys.algo.loss import LossSpec
    from rlsys.config import LearnerConfig
    from rlsys.orchestration.actors import LearnerGroup

    cfg = LearnerConfig(num_ranks=ranks, zero_stage=stage, num_cpus_per_rank=0.5, micro_batch_size=4)
    group = LearnerGroup(cfg, model_path, LossSpec(), "float32")
    try:
        param_bytes = group.param_bytes()
        peak = [peak_rss_bytes(pid) for pid in group.pids()]
    finally:
        group.shutdown()
    return {"zero_stage": stage, "ranks": ranks, "param_MiB_per_rank": [round(b / 2**20, 1) for b in param_bytes],
            "peak_rss_MiB_per_rank": [round(b / 2**20, 1) for b in peak]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:smollm2-135m")
    args = parser.parse_args()
    import ray

    from rlsys.config import ModelConfig
    from rlsys.models.resolve import resolve_model
    from rlsys.orchestration.cluster import actor_env

    model_path = resolve_model(ModelConfig(path=args.model))
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": actor_env() | {"DS_ACCELERATOR": "cpu"}})
    try:
        rows = [measure(model_path, stage, ranks) for ranks in (1, 2) for stage in (2, 3)]
    finally:
        ray.shutdown()
    by = {(r["zero_stage"], r["ranks"]): r for r in rows}
    ratios = {f"{ranks}_ranks": {
        "param_bytes_zero3_over_zero2": round(max(by[3, ranks]["param_MiB_per_rank"])
                                              / max(by[2, ranks]["param_MiB_per_rank"]), 3),
        "peak_rss_zero3_over_zero2": round(max(by[3, ranks]["peak_rss_MiB_per_rank"])
                                           / max(by[2, ranks]["peak_rss_MiB_per_rank"]), 3)} for ranks in (1, 2)}
    path = write_json("zero3_memory", {"model": args.model, "rows": rows, "ratios": ratios})
    fig, (ax_p, ax_r) = new_figure(2)
    labels = [f"ZeRO-{r['zero_stage']}\n{r['ranks']} rank(s)" for r in rows]
    ax_p.bar(labels, [max(r["param_MiB_per_rank"]) for r in rows])
    ax_p.set(title="parameters held per rank (MiB)", ylabel="MiB")
    ax_r.bar(labels, [max(r["peak_rss_MiB_per_rank"]) for r in rows])
    ax_r.set(title="peak resident memory per rank (MiB)", ylabel="MiB")
    fig.suptitle(f"learner memory per rank, {args.model}")
    png = save_figure(fig, "zero3_memory")
    print(f"wrote {relpath(path)} and {relpath(png)}: {ratios}")


if __name__ == "__main__":
    main()
