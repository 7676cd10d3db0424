"""Adversarial answers for the ``math`` verifier: pathological maths is refused by the guard in
milliseconds (never the service timeout), malformed text never raises, nothing is executed.
Graded through the RewardService (so a hang would be cut by its timeout, never the test's) and,
for the per-answer time bound, in-process."""
import os
import time

import pytest

from rlsys.reward.math_guard import check_expr, check_text
from rlsys.reward.service import RewardService
from rlsys.reward.verifiers import get_verifier
from rlsys.types import VerifyResult

# Answers sympy cannot compare in bounded time: the guard must refuse each (guard_rejected=True).
PATHOLOGICAL = [
    "\\boxed{9^{9^{9}}}", "The answer is 2^2^2^2^2^2", "\\boxed{2^{2^{30}}}", "\\boxed{10^{-10^{10}}}",
    "\\boxed{10^{10^{10^{10}}}}", "The answer is $10^{10^{10^{10}}}$", "\\boxed{9^{9^{9^{9^{9}}}}}",
    "\\boxed{(10^{100})!}", "\\boxed{100000!}", "\\boxed{5!!!!}",
    "\\boxed{x^{x^{x^{x^{x^{x}}}}}}", "\\boxed{\\sum_{n=1}^{10^{100}} n}", "\\boxed{\\sum_{n=1}^{10^{12}} n^{n}}",
    "\\boxed{\\prod_{k=1}^{10^{8}} k}", "\\boxed{\\sum_{n=1}^{\\infty} \\frac{\\sin(n^2)}{n!}}",
    "\\boxed{\\int_0^1 e^{\\sin(e^{x^{3}})} \\cos(x^{7} + \\sqrt{x}) dx}", "\\boxed{\\int_0^{\\infty} \\frac{\\sin(x^5)}{x^{1/3} + e^{x}} dx}",
    "\\boxed{\\lim_{x \\to 0} \\frac{\\sin(\\tan(x)) - \\tan(\\sin(x))}{x^{7}}}", "\\boxed{(x+1)^{1000}}",
    "\\boxed{(x + y + z)^{200} - x}", "\\boxed{2^{3^{4^{5}}}}", "\\boxed{2^{2^{2^{2^{2}}}}}",
    "\\boxed{e^{e^{e^{e^{10}}}}}", "\\boxed{10^{10^{6}}}", "\\boxed{(2^{10^{7}})}",
    "\\boxed{" + "+".join(f"x_{{{i}}}" for i in range(200)) + "}",
    "\\boxed{" + "(" * 150 + "1" + ")" * 150 + "}", "\\boxed{" + "\\frac{" * 30 + "1" + "}{2}" * 30 + "}",
    "\\boxed{" + "1+" * 300 + "1}", "The answer is " + "2^" * 40 + "2", "The answer is 9^9^9",
    "\\boxed{10^{10^{100}}}", "\\boxed{\\int_0^1 \\sin(\\sin(x)) dx}", "\\boxed{\\sum_{k=0}^{n} \\binom{n}{k}^{5}}",
]
# Malformed, hostile or huge text: must not raise, hang or execute; may grade 0 or be guard-refused.
MALFORMED = [
    "", "   \n\t  ", "1" * 1_000_000, "x" * 1_000_000, "{" * 1_000_000, "\\boxed{" * 100_000,
    "\\boxed{" + "{" * 50_000 + "1" + "}" * 50_001, "\\frac{" * 100_000, "$" * 1_000_000,
    "1 " * 200_000, "Answer: " * 50_000, "The final answer is " + "$1$, " * 20_000,
    "\\boxed{" + "(" * 9 + "1" + ")" * 9 + "}", "\\boxed{\uff14\uff12}", "\\boxed{\u0664\u0662}",
    "\\boxed{4\u200b2}", "\\boxed{\u202e24}", "\\boxed{\u216b}", "\\boxed{\u0412}",
    "\x00" * 1000 + "\\boxed{\x00}", "\ud800\\boxed{5\udfff}",
    "\\boxed{\\input{/etc/passwd}}", "\\boxed{\\def\\x{\\x x}\\x}", "\\boxed{\\begin{pmatrix}" + "1&" * 100 + "1\\end{pmatrix}}",
    "\\boxed{}", "\\boxed{\\}", "\\boxed{\\binom{10^{9}}{5}}", "\\boxed{1e999999999}",
    "\\boxed{3\\uparrow\\uparrow 10^{100}}",
    "\\boxed{" + "\\frac{" * 500 + "1" + "}{2}" * 500 + "}",  # past the brace scan: no complete box
    "\\boxed{1}" * 5_000, "\\boxed{" + "x" * 5_000 + "}", "\u2074" * 10_000,
]


def injections(marker: str) -> list[str]:
    inject = f"__import__('os').system('touch {marker}')"
    return [inject, f"\\boxed{{{inject}}}", f"Answer: (lambda: {inject})()", f"<answer>{inject}</answer>",
            f"The answer is 1+2+3+{inject}", f"The answer is ({inject})", "The answer is 2**(9**9**9)",
            "\\boxed{" + inject.replace("(", "{").replace(")", "}") + "}"]


REFERENCES = ("5", "\\frac{3}{4}", "x^2+1")
GENEROUS_S = 2.0  # a per-answer bound no healthy run gets near; real refusals take milliseconds


def test_enough_adversarial_responses(tmp_path):
    assert len(PATHOLOGICAL) + len(MALFORMED) + len(injections(str(tmp_path))) >= 60


@pytest.mark.parametrize("response", PATHOLOGICAL, ids=lambda r: r[:40])
def test_pathological_answer_is_refused_quickly(response):
    start = time.monotonic()
    result = get_verifier("math")(response, "5")
    assert time.monotonic() - start < GENEROUS_S
    assert result.score == 0.0 and result.guard_rejected, result


@pytest.mark.parametrize("reference", ["9^{9^{9}}", "2^{2^{30}}", "10^{-10^{10}}", "\\sum_{n=1}^{10^{100}} n",
                                       "(10^{100})!"])
def test_pathological_reference_is_ungradable_quickly(reference):
    start = time.monotonic()
    result = get_verifier("math")("\\boxed{5}", reference)
    assert time.monotonic() - start < GENEROUS_S
    assert result.score is None and result.guard_rejected, result


def test_guard_passes_ordinary_answers():
    from rlsys.reward.math_verifier import read_response

    for answer in ("\\boxed{2^{10}}", "\\boxed{10!}", "\\boxed{2^{3^{2}}}", "\\boxed{\\sum_{k=1}^{100} k^2}",
                   "\\boxed{(x+1)^{5}}", "\\boxed{x^{100}}", "\\boxed{10^{-6}}",
                   "\\boxed{\\binom{100}{50}}", "\\boxed{1.5 \\times 10^{8}}"):
        parsed = read_response(answer)
        assert parsed.refused is None and parsed.values, answer
        assert check_expr(parsed.values[0]) is None, answer
    assert check_text("1" * 401) and check_text("(" * 11 + ")" * 11) and check_text("x+1") is None


@pytest.fixture(scope="module")
def service():
    svc = RewardService(num_workers=2, timeout_s=10.0)
    yield svc
    svc.close()


def test_adversarial_through_the_service_never_time_out_raise_or_execute(service, tmp_path):
    marker = str(tmp_path / "pwned")
    responses = PATHOLOGICAL + MALFORMED + injections(marker)
    requests = [("math", r, ref) for r in responses for ref in REFERENCES]
    results, report = service.grade(requests)
    assert len(results) == len(requests) == report.num_graded
    assert report.num_timeouts == 0 and report.num_worker_deaths == 0, report
    for (_, response, reference), result in zip(requests, results):
        assert isinstance(result, VerifyResult)
        assert result.score in (0.0, 1.0) and result.reason, (response[:60], reference, result)
        if response in PATHOLOGICAL:
            assert result.guard_rejected, (response[:60], result)
        assert result.score == 0.0 or "\uff14" in response or "\\boxed{1}" in response, (response[:60], result)
    assert not os.path.exists(marker), "a code-injection string was executed"
    again, _ = service.grade([("math", r"\boxed{5}", "5")])
    assert again[0].score == 1.0


# ---------------------------------------------------------------- every built-in verifier, through the service

OTHER_REFERENCES = {"arithmetic": "42", "exact_match": "x", "multiple_choice": "B",
                    "countdown": '{"numbers": [1, 2, 3], "target": 6}'}
OTHER_TIMEOUT_S = 1.0  # other verifiers may legitimately end as None; a low limit keeps the test short


def test_other_verifiers_on_adversarial_text_never_raise_hang_or_execute(tmp_path):
    marker = str(tmp_path / "pwned")
    requests = [(name, r, ref) for r in MALFORMED + injections(marker) + PATHOLOGICAL[:8]
                for name, ref in OTHER_REFERENCES.items()]
    with RewardService(num_workers=2, timeout_s=OTHER_TIMEOUT_S) as svc:
        results, report = svc.grade(requests)
        again, _ = svc.grade([("arithmetic", "42", "42")])
    assert len(results) == len(requests) == report.num_graded
    for (name, response, _), result in zip(requests, results):
        assert isinstance(result, VerifyResult)
        assert result.score is None or 0.0 <= result.score <= 1.0, (name, response[:60], result)
        assert result.score != 1.0 or "\uff14" in response, (name, response[:60], result)  # NFKC: 42
    # Each answer either finished or was cut at OTHER_TIMEOUT_S; slack for two busy shared cores.
    assert report.seconds < OTHER_TIMEOUT_S * report.num_timeouts + 40, report
    assert not os.path.exists(marker), "a code-injection string was executed"
    assert again[0].score == 1.0
