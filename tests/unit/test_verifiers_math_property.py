"""Property: every common written form of a value grades 1 against every other form of the same
value, and 0 against every form of a different value (seeded random integers, fractions, decimals)."""
import random
from fractions import Fraction

import pytest

from rlsys.reward.verifiers import get_verifier

SEEDS = range(6)
VALUES_PER_SEED = 4


def exact_decimal(value: Fraction) -> str | None:
    """``value`` as a terminating decimal, or None if its denominator has a prime factor other than 2, 5."""
    k = next((k for k in range(13) if 10 ** k % value.denominator == 0), None)
    if k is None:
        return None
    digits = abs(value.numerator) * (10 ** k // value.denominator)
    whole, frac = divmod(digits, 10 ** k)
    return ("-" if value < 0 else "") + f"{whole}." + str(frac).rjust(k, "0") if k else str(value.numerator)


def written_forms(value: Fraction) -> list[str]:
    """The ways a solution or a reference writes ``value`` (LaTeX and plain)."""
    p, q, sign = abs(value.numerator), value.denominator, "-" if value < 0 else ""
    if q == 1:
        forms = [f"{sign}{p}", f"{sign}{p}.0", f"{sign}\\frac{{{2 * p}}}{{2}}", f"{sign}{3 * p}/3"]
    else:
        forms = [f"{sign}\\frac{{{p}}}{{{q}}}", f"{sign}{p}/{q}", f"{sign}\\dfrac{{{2 * p}}}{{{2 * q}}}"]
    decimal = exact_decimal(value)
    if decimal is not None and q > 1:
        forms.append(decimal)
    return forms


def responses(form: str) -> list[str]:
    return [form, f"\\boxed{{{form}}}", f"The answer is {form}.", f"So the result is ${form}$.",
            f"Adding the parts gives the total. The final answer is $\\boxed{{{form}}}$"]


def random_value(rng: random.Random) -> Fraction:
    kind = rng.choice(["int", "frac", "decimal"])
    if kind == "int":
        return Fraction(rng.randint(-999, 9999))
    if kind == "decimal":  # denominators 2^a 5^b: exact decimals such as 0.125 or -3.75
        return Fraction(rng.randint(-999, 999) or 1, 2 ** rng.randint(0, 3) * 5 ** rng.randint(0, 2))
    return Fraction(rng.randint(-99, 99) or 1, rng.choice([3, 6, 7, 9, 11, 12]))


@pytest.mark.parametrize("seed", SEEDS)
def test_every_form_of_a_value_grades_1_and_a_different_value_0(seed):
    rng, grade = random.Random(seed), get_verifier("math")
    for _ in range(VALUES_PER_SEED):
        value = random_value(rng)
        other = value + Fraction(rng.randint(1, 5), rng.choice([1, 2, 3]))
        for form in written_forms(value):
            for response in responses(form):
                for reference in written_forms(value):
                    assert grade(response, reference).score == 1.0, (value, response, reference)
                for reference in written_forms(other):
                    assert grade(response, reference).score == 0.0, (value, response, other, reference)


def test_exact_decimal():
    assert exact_decimal(Fraction(1, 8)) == "0.125" and exact_decimal(Fraction(-15, 4)) == "-3.75"
    assert exact_decimal(Fraction(1, 3)) is None and exact_decimal(Fraction(7)) == "7"
