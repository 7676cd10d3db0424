"""Built-in, procedurally generated tasks: rows of ``{id, prompt, reference, verifier, difficulty}``.

``arithmetic`` is generated here (short prompts such as ``"12+7="`` for the character-level tiny
model), and ``arithmetic_chat`` asks the same problems as a question for an instruction-tuned model,
graded by ``math``; ``countdown`` and ``gsm_symbolic`` come from reasoning-gym, which generates offline (it is
imported lazily: it takes seconds). Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import json
import random
from typing import Callable, Sequence

ARITHMETIC_LEVELS = {
    1: "a+b, one-digit operands",
    2: "a+b, a two-digit and b one-digit",
    3: "a+b or a-b, two-digit operands, result >= 0",
    4: "a+b+c or a+b-c with two-digit operands (result >= 0), or one-digit * two-digit",
    5: "two-digit * two-digit, or (a+b)*c with two-digit a, b and one-digit c",
}
COUNTDOWN_LEVELS = {d: f"{d + 2} source numbers" for d in (1, 2, 3, 4)}


def generate_task(name: str, n: int, seed: int, difficulties: Sequence[int] = (1, 2, 3)) -> list[dict]:
    """``n`` rows of built-in task ``name``, deterministic in ``(name, n, seed, difficulties)``.

    Difficulties are assigned round-robin (row i has ``difficulties[i % k]``), so the mix is
    balanced; ``id`` is ``"{name}-s{seed}-{i}"``. Rows may repeat a problem (level-1 arithmetic
    has only 100 distinct ones); ids are always unique.
    """
    if name not in TASKS:
        raise KeyError(f"unknown built-in task {name!r}; known: {sorted(TASKS)}")
    if n < 0:
        raise ValueError(f"n={n}: must be >= 0")
    difficulties = tuple(int(d) for d in difficulties)
    if not difficulties:
        raise ValueError("difficulties: at least one level is needed")
    return TASKS[name](n, seed, difficulties)


def _with_ids(name: str, seed: int, items: list[tuple[str, str, int]], verifier: str) -> list[dict]:
    """Rows from ``(prompt, reference, difficulty)`` items, with ids ``"{name}-s{seed}-{i}"``."""
    return [{"id": f"{name}-s{seed}-{i}", "prompt": prompt, "reference": reference, "verifier": verifier,
             "difficulty": difficulty} for i, (prompt, reference, difficulty) in enumerate(items)]


def _check_levels(task: str, difficulties: tuple[int, ...], known: dict) -> None:
    bad = [d for d in difficulties if d not in known]
    if bad:
        raise ValueError(f"{task}: unknown difficulty levels {bad}; known: {sorted(known)}")


# ---------------------------------------------------------------- arithmetic

def arithmetic_problem(level: int, rng: random.Random) -> tuple[str, int]:
    """One ``(expression, exact integer value)`` at ``level`` (see ARITHMETIC_LEVELS)."""
    two = lambda: rng.randint(10, 99)  # noqa: E731 - a two-digit operand
    if level == 1:
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        return f"{a}+{b}", a + b
    if level == 2:
        a, b = two(), rng.randint(0, 9)
        return f"{a}+{b}", a + b
    if level == 3:
        a, b = two(), two()
        if rng.random() < 0.5:
            return f"{a}+{b}", a + b
        a, b = max(a, b), min(a, b)
        return f"{a}-{b}", a - b
    if level == 4:
        if rng.random() < 0.5:
            a, b = rng.randint(2, 9), two()
            return f"{a}*{b}", a * b
        a, b, c = two(), two(), two()
        if rng.random() < 0.5:
            return f"{a}+{b}+{c}", a + b + c
        c = min(c, a + b)  # keeps the answer >= 0
        return f"{a}+{b}-{c}", a + b - c
    if level == 5:
        if rng.random() < 0.5:
            a, b = two(), two()
            return f"{a}*{b}", a * b
        a, b, c = two(), two(), rng.randint(2, 9)
        return f"({a}+{b})*{c}", (a + b) * c
    raise ValueError(f"arithmetic: unknown difficulty level {level}; known: {sorted(ARITHMETIC_LEVELS)}")


def _arithmetic(n: int, seed: int, difficulties: tuple[int, ...]) -> list[dict]:
    _check_levels("arithmetic", difficulties, ARITHMETIC_LEVELS)
    rng = random.Random(f"arithmetic-{seed}")  # str seeds hash deterministically (not via hash())
    items = []
    for i in range(n):
        level = difficulties[i % len(difficulties)]
        expr, value = arithmetic_problem(level, rng)
        items.append((f"{expr}=", str(value), level))  # the tiny model reads "12+7=", answers "19<eos>"
    return _with_ids("arithmetic", seed, items, "arithmetic")


CHAT_QUESTION = "What is {expr}? Reply with just the number."


def _arithmetic_chat(n: int, seed: int, difficulties: tuple[int, ...]) -> list[dict]:
    """The ``arithmetic`` problems (same generator and seed stream) as a question for a chat model,
    graded by ``math`` (which reads a bare final number as well as a boxed one)."""
    rows = _arithmetic(n, seed, difficulties)
    items = [(CHAT_QUESTION.format(expr=r["prompt"].removesuffix("=").replace("+", " + ").replace("-", " - ")
                                   .replace("*", " * ")), r["reference"], r["difficulty"]) for r in rows]
    return _with_ids("arithmetic_chat", seed, items, "math")


# ---------------------------------------------------------------- reasoning-gym tasks

def _per_level(n: int, difficulties: tuple[int, ...]) -> dict[int, int]:
    """How many of the n round-robin rows fall on each level."""
    counts = {d: 0 for d in difficulties}
    for i in range(n):
        counts[difficulties[i % len(difficulties)]] += 1
    return counts


def _interleave(per_level: dict[int, list], difficulties: tuple[int, ...], n: int) -> list:
    cursors = {d: iter(rows) for d, rows in per_level.items()}
    return [next(cursors[difficulties[i % len(difficulties)]]) for i in range(n)]


def _countdown(n: int, seed: int, difficulties: tuple[int, ...]) -> list[dict]:
    _check_levels("countdown", difficulties, COUNTDOWN_LEVELS)
    import reasoning_gym

    per_level = {}
    for level, count in _per_level(n, difficulties).items():
        if count == 0:
            continue
        # A separate seeded stream per level, so adding a level does not change the others.
        dataset = reasoning_gym.create_dataset("countdown", size=count, seed=seed * 1000 + level,
                                               min_numbers=level + 2, max_numbers=level + 2)
        per_level[level] = [
            (item["question"], json.dumps({"numbers": item["metadata"]["numbers"],
                                           "target": item["metadata"]["target"]}), level)
            for item in dataset]
    return _with_ids("countdown", seed, _interleave(per_level, difficulties, n), "countdown")


def _gsm_symbolic(n: int, seed: int, difficulties: tuple[int, ...]) -> list[dict]:
    """GSM-Symbolic word problems. reasoning-gym 0.1.25 supports only its difficulty 1.0, so every
    row has difficulty 1 whatever ``difficulties`` asks for."""
    import reasoning_gym

    if n == 0:
        return []
    dataset = reasoning_gym.create_dataset("gsm_symbolic", size=n, seed=seed)
    return _with_ids("gsm_symbolic", seed, [(item["question"], str(item["answer"]), 1) for item in dataset],
                     "math")


TASKS: dict[str, Callable[[int, int, tuple[int, ...]], list[dict]]] = {
    "arithmetic": _arithmetic,
    "arithmetic_chat": _arithmetic_chat,
    "countdown": _countdown,
    "gsm_symbolic": _gsm_symbolic,
}
