"""Benchmark: RewardService grading under a hostile mix (5% pathological maths), 1 vs 2 workers.

Workload: 10,000 ``math`` answers, 95% the worked solutions of bench_grading.py (GRPO groups of 8),
5% pathological answers drawn from templates with fresh numbers (power towers, 2^{2^k},
10^{-10^k}, huge sums and factorials, hard integrals, big symbolic powers), so no cache helps.
Reported for each worker count: answers/s, timeouts, share of worker time spent in timeouts,
workers replaced, guard rejections. Baselines measured in the same run: the clean mix (a
CLEAN_SUBSET-answer subset of the same solutions, for "hostile / clean" throughput) and the hostile
mix with the guard disabled (``verify_math_unguarded``, loaded by path) on an UNGUARDED_SUBSET-answer
subset with the same 5% share, since without the guard every pathological answer can hold a worker
for the full timeout. Also the in-process time the guard takes to refuse each pathological answer.
Must not import ray, vllm or deepspeed. Usage: ``python benchmarks/bench_grading_hostile.py [--quick]``.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `common` when run as a script

N_ANSWERS, HOSTILE_SHARE = 10_000, 0.05
CLEAN_SUBSET, UNGUARDED_SUBSET = 2_000, 400
WORKER_COUNTS = (1, 2)
TIMEOUT_S = 5.0  # the default reward.timeout_s
UNGUARDED = "rlsys.reward.math_verifier:verify_math_unguarded"


def pathological_answer(rng: random.Random) -> str:
    """One answer sympy cannot compare in bounded time, with fresh numbers."""
    a, b, k = rng.randint(3, 9), rng.randint(7, 9), rng.randint(7, 12)
    return rng.choice([
        f"\\boxed{{{a}^{{{b}^{{{b}}}}}}}",
        "The answer is " + "^".join([str(a)] * rng.randint(5, 8)),
        f"So the final answer is $\\boxed{{2^{{2^{{{rng.randint(25, 40)}}}}}}}$.",
        f"\\boxed{{10^{{-10^{{{k}}}}}}}",
        f"\\boxed{{\\sum_{{n=1}}^{{10^{{{rng.randint(30, 100)}}}}} n^{{{a}}}}}",
        f"\\boxed{{({a} \\cdot 10^{{{k}}})!}}",
        f"\\boxed{{\\int_0^{{{a}}} e^{{\\sin(x^{{{b}}})}} \\cos(x^{{{k}}}) \\, dx}}",
        f"\\boxed{{(x+{a})^{{{rng.randint(300, 3000)}}} - x^{{{b}}}}}",
        f"\\boxed{{x^{{x^{{x^{{x^{{{a}}}}}}}}}}}",
    ])


def hostile_requests(n: int, share: float, seed: int = 0) -> list[tuple[str, str, str]]:
    """n ``math`` requests: the clean mix of bench_grading.py with ``share`` replaced by pathological answers."""
    from bench_grading import SAMPLES_PER_PROBLEM, math_requests

    rng = random.Random(seed)
    clean = math_requests(-(-n // SAMPLES_PER_PROBLEM), seed)[:n]
    for i in rng.sample(range(n), round(n * share)):
        clean[i] = ("math", pathological_answer(rng), clean[i][2])
    return clean


def service_run(requests: list, num_workers: int, verifier_paths: tuple[str, ...] = ()) -> dict:
    """One timed RewardService.grade of ``requests`` after an untimed warm-up batch."""
    from rlsys.reward.service import RewardService

    if verifier_paths:  # grade the same answers with the verifier at that path
        requests = [(verifier_paths[0], response, reference) for _, response, reference in requests]
    with RewardService(num_workers, TIMEOUT_S, verifier_paths) as service:
        service.grade(requests[:50])  # worker start-up, imports, parser caches
        replaced = service.num_replaced
        results, report = service.grade(requests)
        replaced = service.num_replaced - replaced
    scores = [r.score for r in results]
    return {"n_answers": len(requests), "answers_per_s": round(len(requests) / report.seconds, 1),
            "seconds": round(report.seconds, 2), "timeouts": report.num_timeouts,
            "timeout_time_share": round(report.num_timeouts * TIMEOUT_S / (report.seconds * num_workers), 4),
            "workers_replaced": replaced, "guard_rejected": sum(r.guard_rejected for r in results),
            "n_correct": sum(s is not None and s >= 0.5 for s in scores), "n_ungradable": sum(s is None for s in scores)}


def guard_latency_ms(n: int, seed: int = 1) -> dict:
    """In-process milliseconds for the guarded verifier to grade fresh pathological answers."""
    from rlsys.reward.verifiers import get_verifier

    verify, rng = get_verifier("math"), random.Random(seed)
    verify("\\boxed{1}", "1")
    times, rejected = [], 0
    for _ in range(n):
        answer = pathological_answer(rng)
        start = time.perf_counter()
        rejected += verify(answer, str(rng.randint(1, 99))).guard_rejected
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    return {"n": n, "rejected": rejected, "p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(times[int(0.99 * (n - 1))], 2), "max_ms": round(times[-1], 2)}


def _plot(rows: dict, unguarded: dict):
    from common import new_figure, save_figure

    fig, (ax1, ax2) = new_figure(2)
    labels = [f"{k} worker{'s' * (k > 1)}" for k in WORKER_COUNTS]
    ratios = [rows[k]["hostile_vs_clean_throughput"] for k in WORKER_COUNTS]
    ax1.bar(labels, ratios, color=["C0", "C1"])
    ax1.axhline(1.0, color="k", lw=0.8, ls="--")
    ax1.set_title("hostile mix (5% pathological, guard on)\nthroughput / clean mix")
    ax2.bar(["guard on", "guard off"], [unguarded["guard_on"]["answers_per_s"], unguarded["guard_off"]["answers_per_s"]],
            color=["C0", "C3"])
    ax2.set_ylabel("answers/s")
    ax2.set_title(f"hostile subset ({unguarded['guard_on']['n_answers']} answers, 2 workers)\n"
                  f"timeouts: {unguarded['guard_on']['timeouts']} vs {unguarded['guard_off']['timeouts']}")
    return save_figure(fig, "grading_hostile")


def main(quick: bool = False) -> dict:
    from common import relpath, write_json

    scale = 5 if quick else 1
    hostile = hostile_requests(N_ANSWERS // scale, HOSTILE_SHARE)
    clean = hostile_requests(CLEAN_SUBSET // scale, 0.0, seed=2)
    rows = {}
    for k in WORKER_COUNTS:
        rows[k] = {"hostile": service_run(hostile, k), "clean_subset": service_run(clean, k)}
        rows[k]["hostile_vs_clean_throughput"] = round(
            rows[k]["hostile"]["answers_per_s"] / rows[k]["clean_subset"]["answers_per_s"], 3)
        print(f"  hostile grading, {k} worker(s): {rows[k]}", flush=True)
    subset = hostile_requests(UNGUARDED_SUBSET // scale, HOSTILE_SHARE, seed=3)
    unguarded = {"guard_on": service_run(subset, 2), "guard_off": service_run(subset, 2, (UNGUARDED,))}
    unguarded["guard_on_vs_off_throughput"] = round(
        unguarded["guard_on"]["answers_per_s"] / unguarded["guard_off"]["answers_per_s"], 2)
    print(f"  guard on vs off (subset): {unguarded}", flush=True)
    latency = guard_latency_ms(200 // scale)
    png = _plot(rows, unguarded)
    payload = {"baseline": f"clean mix ({CLEAN_SUBSET // scale}-answer subset, same workers) for throughput; "
                           f"the hostile mix with the guard disabled on a {UNGUARDED_SUBSET // scale}-answer subset "
                           "(same 5% share), 2 workers",
               "config": {"n_answers": len(hostile), "hostile_share": HOSTILE_SHARE, "timeout_s": TIMEOUT_S,
                          "timing": "one timed grade after a 50-answer warm-up, fresh service per setting",
                          "timeout_time_share": "timeouts * timeout_s / (wall seconds * workers)"},
               "results": {f"workers_{k}": row for k, row in rows.items()}, "guard_on_vs_off_subset": unguarded,
               "guard_refusal_in_process": latency, "plot": relpath(png)}
    path = write_json("grading_hostile", payload)
    return {"json": relpath(path), **{f"hostile_vs_clean_{k}w": rows[k]["hostile_vs_clean_throughput"] for k in rows},
            "timeouts_guard_on": sum(rows[k]["hostile"]["timeouts"] for k in rows),
            "guard_on_vs_off_throughput": unguarded["guard_on_vs_off_throughput"]}


if __name__ == "__main__":  # the service's forkserver re-imports the main script: keep it guarded
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the answers")
    print(main(parser.parse_args().quick))
