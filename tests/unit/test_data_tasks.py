"""Built-in task generation: determinism, the difficulty mix, and that every reference is correct."""
import json
import re

import pytest

from rlsys.data.tasks import ARITHMETIC_LEVELS, arithmetic_problem, generate_task


def _value(expr: str) -> int:
    # A slow, independent evaluator of the generated grammar (never eval): (a+b)*c, a*b, a+b-c, ...
    m = re.fullmatch(r"\((\d+)\+(\d+)\)\*(\d+)", expr)
    if m:
        a, b, c = map(int, m.groups())
        return (a + b) * c
    m = re.fullmatch(r"(\d+)\*(\d+)", expr)
    if m:
        return int(m.group(1)) * int(m.group(2))
    tokens = re.findall(r"[+-]|\d+", expr)
    total = int(tokens[0])
    for op, num in zip(tokens[1::2], tokens[2::2]):
        total = total + int(num) if op == "+" else total - int(num)
    return total


def test_arithmetic_is_deterministic_and_seed_dependent():
    a = generate_task("arithmetic", 50, seed=3, difficulties=(1, 2, 3))
    b = generate_task("arithmetic", 50, seed=3, difficulties=(1, 2, 3))
    c = generate_task("arithmetic", 50, seed=4, difficulties=(1, 2, 3))
    assert a == b
    assert [r["prompt"] for r in a] != [r["prompt"] for r in c]


def test_arithmetic_rows_are_correct_and_round_robin():
    rows = generate_task("arithmetic", 500, seed=0, difficulties=(1, 2, 3, 4, 5))
    assert [r["difficulty"] for r in rows[:7]] == [1, 2, 3, 4, 5, 1, 2]
    assert len({r["id"] for r in rows}) == 500
    for r in rows:
        assert set(r) == {"id", "prompt", "reference", "verifier", "difficulty"}
        assert r["verifier"] == "arithmetic"
        assert r["prompt"].endswith("=")
        assert r["reference"] == str(_value(r["prompt"][:-1]))
        assert int(r["reference"]) >= 0


def test_arithmetic_levels_have_the_documented_shapes():
    import random

    rng = random.Random(0)
    for _ in range(200):
        expr, value = arithmetic_problem(1, rng)
        a, b = map(int, expr.split("+"))  # level 1: one-digit a+b, e.g. "8+8" -> 16
        assert a < 10 and b < 10 and value == a + b
        expr, value = arithmetic_problem(2, rng)
        a, b = map(int, expr.split("+"))  # level 2: two-digit + one-digit, e.g. "47+8" -> 55
        assert 10 <= a <= 99 and b < 10 and value == a + b
    with pytest.raises(ValueError, match="unknown difficulty"):
        generate_task("arithmetic", 3, 0, (9,))
    assert set(ARITHMETIC_LEVELS) == {1, 2, 3, 4, 5}


def test_unknown_task_is_a_key_error():
    with pytest.raises(KeyError, match="known"):
        generate_task("nope", 3, 0)


def test_countdown_reference_is_json_with_the_numbers():
    rows = generate_task("countdown", 4, seed=0, difficulties=(1, 2))
    assert rows == generate_task("countdown", 4, seed=0, difficulties=(1, 2))
    for r in rows:
        ref = json.loads(r["reference"])
        assert r["verifier"] == "countdown"
        assert len(ref["numbers"]) == r["difficulty"] + 2  # level d uses d+2 source numbers
        assert str(ref["target"]) in r["prompt"]


def test_gsm_symbolic_rows_use_the_math_verifier():
    rows = generate_task("gsm_symbolic", 3, seed=0)
    assert rows == generate_task("gsm_symbolic", 3, seed=0)
    for r in rows:
        assert r["verifier"] == "math" and r["difficulty"] == 1
        assert re.fullmatch(r"-?\d+(\.\d+)?", r["reference"])


def test_arithmetic_chat_asks_the_arithmetic_problems_as_questions_graded_by_math():
    plain = generate_task("arithmetic", 40, seed=2, difficulties=(2, 3, 4, 5))
    chat = generate_task("arithmetic_chat", 40, seed=2, difficulties=(2, 3, 4, 5))
    assert [r["reference"] for r in chat] == [r["reference"] for r in plain]
    assert [r["difficulty"] for r in chat] == [r["difficulty"] for r in plain]
    for row, base in zip(chat, plain):
        assert row["verifier"] == "math" and row["id"].startswith("arithmetic_chat-s2-")
        m = re.fullmatch(r"What is (.+)\? Reply with just the number\.", row["prompt"])
        assert m, row["prompt"]
        assert m.group(1).replace(" ", "") == base["prompt"].removesuffix("=")
        assert _value(m.group(1).replace(" ", "")) == int(row["reference"])


def test_arithmetic_chat_config_validates_its_levels():
    from pathlib import Path

    from rlsys.config import ConfigError, load_config

    path = str(Path(__file__).resolve().parents[2] / "configs" / "smollm2_arith.yaml")
    cfg = load_config(path, [])
    assert cfg.data.source == "builtin:arithmetic_chat" and cfg.data.chat_template
    cfg.validate()
    with pytest.raises(ConfigError, match="data.difficulties"):
        load_config(path, ["data.difficulties=[9]"]).validate()
