"""The registry contract and the small verifiers: arithmetic, exact_match, multiple_choice, countdown
(its parser checked against hand-worked values), and the opt-in ``code`` sandbox."""
import json
import subprocess
import sys
from fractions import Fraction

import pytest

from rlsys.reward import verifiers
from rlsys.reward.simple_verifiers import ExprError, evaluate_expression, extract_choice, extract_expression
from rlsys.reward.verifiers import get_verifier, register_verifier, safe_verify
from rlsys.types import VerifyResult


# ---------------------------------------------------------------- registry


def test_builtins_are_registered():
    for name in ("math", "arithmetic", "exact_match", "multiple_choice", "countdown"):
        assert callable(get_verifier(name))


def test_code_verifier_is_off_by_default_with_a_hint():
    # In a fresh interpreter: this test session imports the code sandbox (which registers it) elsewhere.
    probe = ("import sys\nfrom rlsys.reward import verifiers\n"
             "assert 'code' not in verifiers.registered_names()\n"
             "try:\n    verifiers.get_verifier('code')\nexcept KeyError as exc:\n    print(exc)\n"
             "assert 'rlsys.reward.code_sandbox' not in sys.modules\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "off by default" in run.stdout and "rlsys.reward.code_sandbox:verify_code" in run.stdout


def test_register_decorator_and_dotted_path():
    @register_verifier("test_always_half")
    def half(response, reference):
        return VerifyResult(0.5, response, "half")

    assert get_verifier("test_always_half") is half
    fn = get_verifier("rlsys.reward.simple_verifiers:verify_exact_match")
    assert fn("A b", "a  B").score == 1.0
    with pytest.raises(KeyError):
        get_verifier("no_such_verifier")
    with pytest.raises(ValueError):
        verifiers.load_path("rlsys.reward.simple_verifiers")  # no ":function"


def test_safe_verify_turns_misbehaviour_into_none():
    def raises(response, reference):
        raise RecursionError("deep")

    def out_of_range(response, reference):
        return VerifyResult(2.0, None, "")

    def wrong_type(response, reference):
        return 1.0

    for fn in (raises, out_of_range, wrong_type):
        result = safe_verify(fn, "r", "ref")
        assert result.score is None and result.reason


# ---------------------------------------------------------------- arithmetic / exact_match

@pytest.mark.parametrize("response,reference,expected", [
    ("42", "42", 1.0), (" 42\n", "42", 1.0), ("-7", "-7", 1.0), ("7", "-7", 0.0), ("-7", "7", 0.0),
    ("007", "7", 1.0), ("-0", "0", 1.0), ("12 + 30 = 42", "42", 1.0),  # the final integer counts
    ("42 or 41", "42", 0.0), ("", "42", 0.0), ("forty-two", "42", 0.0), ("\u221242", "-42", 1.0),
    ("\u0664\u0662", "42", 0.0),  # Arabic-Indic digits are not ASCII digits
    ("1" * 10_000, "1" * 10_000, 1.0),  # compared as strings: no int() digit limit
])
def test_arithmetic(response, reference, expected):
    assert get_verifier("arithmetic")(response, reference).score == expected


def test_arithmetic_bad_reference_is_ungradable():
    assert get_verifier("arithmetic")("42", "forty-two").score is None


@pytest.mark.parametrize("response,reference,expected", [
    ("Paris", "paris", 1.0), ("  New   York ", "new york", 1.0), ("New York.", "new york", 0.0),
    ("\uff21BC", "abc", 1.0), ("", "", 1.0), ("a", "b", 0.0),
])
def test_exact_match(response, reference, expected):
    assert get_verifier("exact_match")(response, reference).score == expected


# ---------------------------------------------------------------- multiple choice

@pytest.mark.parametrize("response,letter", [
    ("B", "B"), ("(c)", "C"), ("D.", "D"), (r"so \boxed{E}", "E"), (r"\boxed{\text{(A)}}", "A"),
    ("The answer is (B).", "B"), ("**Answer:** C", "C"), ("Option (A) is wrong, (D) is right", "D"),
    ("Let me think.\nA", "A"), ("A cat sat on a mat", None), ("", None), ("F", None),
])
def test_extract_choice(response, letter):
    assert extract_choice(response)[0] == letter


def test_multiple_choice_scores():
    mc = get_verifier("multiple_choice")
    assert mc("The answer is (B).", "B").score == 1.0
    assert mc("The answer is (B).", "(b)").score == 1.0
    assert mc("The answer is (C).", "B").score == 0.0
    assert mc("no idea", "B").score == 0.0
    assert mc("B", "not a letter").score is None


# ---------------------------------------------------------------- countdown

@pytest.mark.parametrize("expr,value", [
    ("1+2*3", Fraction(7)),  # * binds tighter: 1 + 6
    ("(1+2)*3", Fraction(9)),
    ("8/3", Fraction(8, 3)),  # exact, no float
    ("10-4-3", Fraction(3)),  # left-associative: (10-4)-3
    ("100/5/2", Fraction(10)),  # (100/5)/2
    ("((25))", Fraction(25)),
    (" 6 * ( 7 - 2 ) / 3 ", Fraction(10)),  # 6*5/3
])
def test_countdown_parser_values(expr, value):
    assert evaluate_expression(expr) == value


@pytest.mark.parametrize("expr", ["", "1+", "(1+2", "1+2)", "-3+5", "2**3", "1.5*2", "1/0", "1/(2-2)",
                                  "__import__('os')", "a+1", "(" * 40 + "1" + ")" * 40, "1" + "+1" * 200])
def test_countdown_parser_rejects(expr):
    with pytest.raises(ExprError):
        evaluate_expression(expr)


def test_extract_expression():
    assert extract_expression("<answer>(25 + 5) * 3</answer>") == "(25 + 5) * 3"
    assert extract_expression("Thinking...\n25 \u00d7 4 = 100") == "25 * 4"
    assert extract_expression(r"$\boxed{100 = 25 \times 4}$") == "25 * 4"
    assert extract_expression("The answer is 3+3.") == "3+3"


REF = json.dumps({"numbers": [25, 5, 3, 7], "target": 90})


@pytest.mark.parametrize("response,expected", [
    ("(25 + 5) * 3", 1.0),  # 30 * 3 = 90, 7 unused: each number at most once
    ("<answer>3 * (25 + 5)</answer>", 1.0),
    ("(25 + 5) * 3 = 90", 1.0),
    ("25 * 3 + 5 + 7 + 3", 0.0),  # 3 used twice
    ("(25 + 5) * 3 + 0", 0.0),  # 0 is not given
    ("25 + 5 * 3", 0.0),  # = 40
    ("90", 0.0),  # the target is not a given number
    ("(25 - 5*5) / 0", 0.0),
    ("__import__('os').system('true')", 0.0),
    ("", 0.0),
])
def test_countdown(response, expected):
    assert get_verifier("countdown")(response, REF).score == expected


def test_countdown_use_all_and_bad_reference():
    ref = json.dumps({"numbers": [25, 5, 3, 7], "target": 90, "use_all": True})
    assert get_verifier("countdown")("(25 + 5) * 3", ref).score == 0.0
    assert get_verifier("countdown")("(25 + 5) * 3 * 7 / 7", ref).score == 0.0  # 7 twice
    assert get_verifier("countdown")("(25 + 5 + 7 - 7) * 3", REF).score == 0.0
    assert get_verifier("countdown")("1+2", "not json").score is None
    assert get_verifier("countdown")("1+2", '{"numbers": [1, 2]}').score is None


# ---------------------------------------------------------------- code sandbox (imported explicitly)
# The escapes it blocks are in tests/unit/test_code_sandbox.py; here only the verifier contract.

def test_code_verifier_scores_and_reasons():
    from rlsys.reward import code_sandbox

    code_sandbox.check_sandbox()  # this machine can build the sandbox (CI runs as root)
    tests = "assert add(2, 3) == 5\n"
    good = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```"
    assert code_sandbox.verify_code(good, tests) == VerifyResult(1.0, "def add(a, b):\n    return a + b\n",
                                                                  "tests passed")
    wrong = code_sandbox.verify_code("def add(a, b):\n    return a - b", tests)
    assert (wrong.score, wrong.reason) == (0.0, "tests failed: AssertionError")
    assert code_sandbox.verify_code("", tests) == VerifyResult(0.0, None, "no code found")
    missing = code_sandbox.verify_code("def plus(a, b):\n    return a + b", tests)
    assert (missing.score, missing.reason) == (0.0, "tests failed: NameError")


def test_code_verifier_refuses_to_run_unsandboxed(monkeypatch):
    from rlsys.reward import code_sandbox

    def unavailable():
        raise code_sandbox.SandboxUnavailable("no namespaces here")

    monkeypatch.setattr(code_sandbox, "check_sandbox", unavailable)
    result = code_sandbox.verify_code("def add(a, b):\n    return a + b", "assert add(2, 3) == 5")
    assert result.score is None and result.reason == "code sandbox unavailable: no namespaces here"
