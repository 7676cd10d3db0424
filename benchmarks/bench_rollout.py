"""Benchmark: rollout tokens/s through rlsys's engine and Ray actors vs vLLM's own ``LLM.generate``.

One workload for every contender: P prompts of the built-in arithmetic task x G samples, at most
``max_new_tokens`` new tokens, temperature 1, the built-in tiny model (float32, CPU). Each contender
runs in a fresh child process; each times ``--rounds`` generate calls after one warm-up call and
reports response tokens / seconds of its fastest round. Contenders:

- ``vllm_plain`` (the baseline): ``vllm.LLM`` in one process with vLLM's default settings
  (``VLLM_CPU_OMP_THREADS_BIND=auto``) and one ``SamplingParams(n=G)`` for every prompt.
- ``vllm_like_rlsys``: the same engine with rlsys's sampling settings (a seed per request, the sampled
  token's log-prob, the model's stop ids): what the settings alone cost.
- ``engine``: ``rlsys.rollout.engine.VLLMRolloutEngine`` in one process (no Ray): requests in, typed
  ``Sample`` records out.
- ``actors_1``, ``actors_2``: ``RolloutGroup`` with 1 and 2 engine actors on a local Ray cluster
  (``rollout.cpu_threads_bind=spread``), the requests split by prompt as in training;
  ``actors_2_vllm_bind``: 2 actors with vLLM's own binding (``cpu_threads_bind=vllm``), which puts
  both engines' threads on the same cores.

Ratios in the JSON: each contender / vllm_plain, and actors_2 / actors_1 (scaling). Usage:
``python benchmarks/bench_rollout.py [--quick] [--prompts P] [--samples G] [--max-new-tokens L]``.
Run it on an otherwise idle machine (under ``flock /tmp/rlsys-integration.lock`` next to other Ray jobs).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _key, _value in (("TOKENIZERS_PARALLELISM", "false"), ("VLLM_CPU_KVCACHE_SPACE", "1")):
    os.environ.setdefault(_key, _value)
sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `common` when run as a script

CONTENDERS = ["vllm_plain", "vllm_like_rlsys", "engine", "actors_1", "actors_2", "actors_2_vllm_bind"]
BASELINE = "vllm_plain"


def workload(P: int, max_new_tokens: int):
    """(model dir, rollout config, P prompts) of the built-in tiny model and arithmetic task."""
    from rlsys.config import load_config
    from rlsys.data.setup import build_prompt_sources
    from rlsys.models.resolve import resolve_model

    from common import REPO_ROOT

    cfg = load_config(str(REPO_ROOT / "configs" / "demo.yaml"),
                      [f"data.prompts_per_step={P}", f"data.num_train={max(P, 512)}", f"rollout.max_new_tokens={max_new_tokens}",
                       f"model.cache_dir={REPO_ROOT / '.cache' / 'rlsys'}"])
    model_path = resolve_model(cfg.model)
    stream, _ = build_prompt_sources(cfg.data, model_path)
    return model_path, cfg.rollout, stream.next_batch().prompts


def requests(prompts, G: int, round_index: int):
    from rlsys.orchestration.stages import SeedScope
    from rlsys.types import SamplingRequest

    scope = SeedScope(0, "bench", round_index)
    return [SamplingRequest(prompt=p, n=G, temperature=1.0, seed=scope.seed(i)) for i, p in enumerate(prompts)]


def timed_rounds(generate, rounds: int) -> tuple[list[float], list[int]]:
    """(seconds, response tokens) of each of ``rounds`` calls ``generate(round_index)``, after a warm-up."""
    generate(-1)
    seconds, tokens = [], []
    for r in range(rounds):
        t0 = time.perf_counter()
        n = generate(r)
        seconds.append(time.perf_counter() - t0)
        tokens.append(n)
    return seconds, tokens


def child(contender: str, P: int, G: int, L: int, rounds: int) -> dict:
    import dataclasses

    model_path, rollout_cfg, prompts = workload(P, L)
    rollout_cfg = dataclasses.replace(rollout_cfg, samples_per_prompt=G, max_new_tokens=L)
    t_start = time.perf_counter()
    if contender in ("vllm_plain", "vllm_like_rlsys"):
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt

        llm = LLM(model=model_path, dtype="float32", max_model_len=rollout_cfg.max_model_len, enforce_eager=True,
                  gpu_memory_utilization=rollout_cfg.gpu_memory_utilization, seed=0)
        start_s = time.perf_counter() - t_start
        token_prompts = [TokensPrompt(prompt_token_ids=list(p.token_ids)) for p in prompts]
        stop = [llm.get_tokenizer().eos_token_id]

        def generate(r: int) -> int:
            if contender == "vllm_plain":
                params = SamplingParams(n=G, temperature=1.0, max_tokens=L)
            else:
                params = [SamplingParams(n=G, temperature=1.0, max_tokens=L, logprobs=0, stop_token_ids=stop,
                                         seed=req.seed) for req in requests(prompts, G, r)]
            outs = llm.generate(token_prompts, params, use_tqdm=False)
            return sum(len(c.token_ids) for o in outs for c in o.outputs)
    elif contender == "engine":
        from rlsys.rollout.engine import VLLMRolloutEngine

        engine = VLLMRolloutEngine(rollout_cfg, model_path)
        start_s = time.perf_counter() - t_start

        def generate(r: int) -> int:
            return sum(len(s.response_token_ids) for s in engine.generate(requests(prompts, G, r)))
    else:
        import ray

        from rlsys.orchestration.actors import RolloutGroup

        workers = 1 if contender == "actors_1" else 2
        bind = "vllm" if contender.endswith("vllm_bind") else "spread"
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _node_ip_address="127.0.0.1",
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}, log_to_driver=False)
        group = RolloutGroup(dataclasses.replace(rollout_cfg, num_workers=workers, cpu_threads_bind=bind),
                             model_path, "float32")
        start_s = time.perf_counter() - t_start

        def generate(r: int) -> int:
            return sum(len(s.response_token_ids) for s in group.generate(requests(prompts, G, r), 0).samples)
    seconds, tokens = timed_rounds(generate, rounds)
    best = min(range(rounds), key=lambda i: seconds[i] / max(tokens[i], 1))
    return {"contender": contender, "prompts": P, "samples_per_prompt": G, "max_new_tokens": L,
            "engine_start_s": round(start_s, 1), "seconds": [round(s, 4) for s in seconds], "tokens": tokens,
            "tokens_per_s": round(tokens[best] / seconds[best], 1),
            "tokens_per_s_median": round(sorted(t / s for t, s in zip(tokens, seconds))[rounds // 2], 1)}


def _plot(rows: list[dict]):
    from common import new_figure, save_figure

    fig, (ax,) = new_figure(1, 7.0)
    names = [r["contender"] for r in rows]
    ax.bar(names, [r["tokens_per_s"] for r in rows], color=["0.5"] + ["C0"] * (len(rows) - 1))
    ax.set_ylabel("response tokens / s (best round)")
    r0 = rows[0]
    ax.set_title(f"rollout, {r0['prompts']} prompts x {r0['samples_per_prompt']}, <= {r0['max_new_tokens']} new tokens")
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    return save_figure(fig, "rollout")


def main(args) -> dict:
    from common import relpath, run_child, write_json

    rows = []
    for contender in CONTENDERS:
        rows.append(run_child(Path(__file__), ["--child", contender, str(args.prompts), str(args.samples),
                                               str(args.max_new_tokens), str(args.rounds)], timeout_s=900.0))
        print(f"  rollout {contender:>20}: {rows[-1]['tokens_per_s']:8.0f} tok/s "
              f"(engine start {rows[-1]['engine_start_s']:.0f} s)", flush=True)
    by = {r["contender"]: r for r in rows}
    ratios = {f"{c}_vs_{BASELINE}": round(by[c]["tokens_per_s"] / by[BASELINE]["tokens_per_s"], 3)
              for c in CONTENDERS if c != BASELINE}
    ratios["actors_2_vs_actors_1"] = round(by["actors_2"]["tokens_per_s"] / by["actors_1"]["tokens_per_s"], 3)
    ratios["actors_2_vllm_bind_vs_actors_1"] = round(by["actors_2_vllm_bind"]["tokens_per_s"]
                                                     / by["actors_1"]["tokens_per_s"], 3)
    png = _plot(rows)
    payload = {"baseline": "vllm_plain: vllm.LLM.generate in one process, default settings, SamplingParams(n=G)",
               "goals": {"actors_1_vs_vllm_plain": 0.95, "actors_2_vs_actors_1": 1.8},
               "config": {"prompts": args.prompts, "samples_per_prompt": args.samples,
                          "max_new_tokens": args.max_new_tokens, "rounds": args.rounds, "model": "builtin:tiny-arith",
                          "timing": "best round (tokens / seconds) after one warm-up call"},
               "rows": rows, "ratios": ratios, "plot": relpath(png)}
    path = write_json("rollout", payload)
    return {"json": relpath(path), "ratios": ratios}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 prompts, 2 rounds")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=5, metavar=("CONTENDER", "P", "G", "L", "ROUNDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        contender, P, G, L, rounds = args.child
        print(json.dumps(child(contender, int(P), int(G), int(L), int(rounds))))
    else:
        if args.quick:
            args.prompts, args.rounds = 64, 2
        print(json.dumps(main(args)["ratios"], indent=1))
