"""Benchmark: RewardService grading throughput (answers/s) with 1 vs 2 worker processes.

Workload: ~400 synthetic worked solutions for 50 problems (8 samples each, as in a GRPO group),
mixing integers, fractions, radicals, polynomials, intervals, wrong answers and answers with no box,
graded by the ``math`` verifier; the same for the ``arithmetic`` verifier. Baselines measured in the
same run: the service with 1 worker (for the 2-worker speed-up) and the verifier called in-process
(for the service's IPC overhead). Each setting gets one untimed pass first (worker start-up, caches).
Must not import ray, vllm or deepspeed. Usage: ``python benchmarks/bench_grading.py [--quick]``.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `common` when run as a script

PROBLEMS, SAMPLES_PER_PROBLEM = 50, 8
WORKER_COUNTS = (1, 2)
TIMEOUT_S = 10.0
FILLER = ("First we simplify the expression step by step. ", "Substituting the values gives ",
          "Therefore, checking the boundary cases, ", "Let $x$ be the unknown; then $2x + 3 = 7$. ")


def _math_problem(rng: random.Random) -> tuple[str, list[str]]:
    """(reference, equivalent spellings of it) for one synthetic problem."""
    a, b = rng.randint(1, 9), rng.randint(2, 12)
    kind = rng.choice(["int", "frac", "sqrt", "poly", "interval"])
    if kind == "int":
        n = rng.randint(-500, 5000)
        return str(n), [str(n), f"{n:,}" if n > 999 else str(n), f"{n}.0"]
    if kind == "frac":
        return f"\\frac{{{a}}}{{{b}}}", [f"\\frac{{{a}}}{{{b}}}", f"{a}/{b}", f"\\dfrac{{{2 * a}}}{{{2 * b}}}"]
    if kind == "sqrt":
        return f"\\frac{{\\sqrt{{{b}}}}}{{{a + 1}}}", [f"\\frac{{\\sqrt{{{b}}}}}{{{a + 1}}}", f"\\sqrt{{{b}}}/{a + 1}"]
    if kind == "poly":
        return f"(x+{a})^2", [f"(x+{a})^2", f"x^2+{2 * a}x+{a * a}", f"(x + {a})^{{2}}"]
    return f"[{a}, {a + b})", [f"[{a}, {a + b})", f"[{a},{a + b})"]


def _wrap(answer: str | None, rng: random.Random) -> str:
    """A worked solution ending with ``answer`` boxed, or stated plainly, or with no final answer."""
    body = "".join(rng.choice(FILLER) for _ in range(rng.randint(2, 12)))
    if answer is None:
        return body + "I am not sure how to finish this."
    if rng.random() < 0.8:
        return body + f"So the final answer is $\\boxed{{{answer}}}$."
    return body + f"The answer is {answer}"


def math_requests(n_problems: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(``math``, response, reference) x n_problems * SAMPLES_PER_PROBLEM: ~half right, ~40% wrong."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_problems):
        reference, spellings = _math_problem(rng)
        wrong, _ = _math_problem(rng)
        for _ in range(SAMPLES_PER_PROBLEM):
            u = rng.random()
            answer = rng.choice(spellings) if u < 0.5 else (wrong if u < 0.9 else None)
            out.append(("math", _wrap(answer, rng), reference))
    return out


def arithmetic_requests(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(``arithmetic``, response, reference) x n: last integer of the response vs the reference."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x, y = rng.randint(1, 999), rng.randint(1, 999)
        got = x * y if rng.random() < 0.6 else x * y + rng.randint(1, 50)
        out.append(("arithmetic", f"{x} * {y}: {x} * {y // 10 * 10} + {x} * {y % 10} = {got}", str(x * y)))
    return out


def in_process_rate(requests: list, repeats: int) -> float:
    """Answers/s calling the verifiers directly in this process (no workers, no IPC)."""
    from common import timings

    from rlsys.reward.verifiers import get_verifier, safe_verify

    def run():
        for name, response, reference in requests:
            safe_verify(get_verifier(name), response, reference)

    return len(requests) / min(timings(run, repeats))


def service_rate(requests: list, num_workers: int, repeats: int) -> dict:
    """Answers/s of RewardService.grade with ``num_workers``, its start-up time and score mix."""
    from common import timings

    from rlsys.reward.service import RewardService

    start = time.perf_counter()
    with RewardService(num_workers, TIMEOUT_S) as service:
        startup_s = time.perf_counter() - start
        seconds = min(timings(lambda: service.grade(requests), repeats))
        results, report = service.grade(requests)
    scores = [r.score for r in results]
    return {"answers_per_s": round(len(requests) / seconds, 1), "startup_s": round(startup_s, 2),
            "timeouts": report.num_timeouts, "n_correct": sum(s is not None and s >= 0.5 for s in scores),
            "n_ungradable": sum(s is None for s in scores)}


def _measure(requests: list, repeats: int) -> dict:
    row = {"n_answers": len(requests), "in_process_answers_per_s": round(in_process_rate(requests, repeats), 1)}
    for k in WORKER_COUNTS:
        row[f"workers_{k}"] = service_rate(requests, k, repeats)
    r1, r2 = row["workers_1"]["answers_per_s"], row["workers_2"]["answers_per_s"]
    row["speedup_2_vs_1_workers"] = round(r2 / r1, 3)
    row["service_1_worker_vs_in_process"] = round(r1 / row["in_process_answers_per_s"], 3)
    return row


def _plot(rows: dict):
    from common import new_figure, save_figure

    fig, axes = new_figure(len(rows))
    for ax, (verifier, row) in zip(axes, rows.items()):
        labels = ["in-process"] + [f"service\n{k} worker{'s' * (k > 1)}" for k in WORKER_COUNTS]
        rates = [row["in_process_answers_per_s"]] + [row[f"workers_{k}"]["answers_per_s"] for k in WORKER_COUNTS]
        base = row["workers_1"]["answers_per_s"]
        ax.bar(labels, [r / base for r in rates], color=["grey", "C0", "C1"])
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_title(f"{verifier}: throughput / service with 1 worker\n({row['n_answers']} answers)")
    return save_figure(fig, "grading")


def main(quick: bool = False) -> dict:
    from common import relpath, write_json

    n_problems = PROBLEMS // 2 if quick else PROBLEMS
    repeats = 1 if quick else 2
    rows = {}
    for verifier, requests in (("math", math_requests(n_problems)),
                               ("arithmetic", arithmetic_requests(n_problems * SAMPLES_PER_PROBLEM))):
        rows[verifier] = _measure(requests, repeats)
        print(f"  grading {verifier}: {rows[verifier]}", flush=True)
    png = _plot(rows)
    payload = {"baseline": "RewardService with 1 worker (speed-up); verifier called in-process (IPC overhead)",
               "config": {"timeout_s": TIMEOUT_S, "repeats": repeats, "timing": "best of repeats after one untimed pass"},
               "results": rows, "plot": relpath(png)}
    path = write_json("grading", payload)
    return {"json": relpath(path), "math_speedup_2_vs_1": rows["math"]["speedup_2_vs_1_workers"],
            "arithmetic_speedup_2_vs_1": rows["arithmetic"]["speedup_2_vs_1_workers"],
            "math_service_vs_in_process": rows["math"]["service_1_worker_vs_in_process"],
            "arithmetic_service_vs_in_process": rows["arithmetic"]["service_1_worker_vs_in_process"]}


if __name__ == "__main__":  # the service's forkserver re-imports the main script: keep it guarded
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="half the answers, one timed pass")
    print(main(parser.parse_args().quick))
