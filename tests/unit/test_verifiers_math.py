"""The ``math`` verifier: final-answer extraction, equivalence on real answer styles, and adversarial
responses graded through the RewardService (so a hang is cut by its timeout, never the test's)."""
import os

import pytest

from rlsys.reward.math_verifier import clean_answer, extract_final_answer, find_answer_phrase, find_boxed
from rlsys.reward.service import RewardService
from rlsys.reward.verifiers import get_verifier
from rlsys.types import VerifyResult

# (response, reference, expected score)
CASES = [
    # boxed, plain
    ("The sum is 2 + 3 = 5, so the answer is $\\boxed{5}$.", "5", 1.0),
    ("Therefore \\boxed{42}", "42", 1.0),
    ("Therefore \\boxed{41}", "42", 0.0),
    ("First we get \\boxed{3}, but correcting it: \\boxed{4}", "4", 1.0),
    ("\\boxed{ 7 }", "7", 1.0),
    ("\\fbox{12}", "12", 1.0),
    ("so $x = \\boxed{\\frac{3}{4}}$", "\\frac{3}{4}", 1.0),
    ("Nested: \\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", 1.0),
    ("\\boxed{2\\sqrt{2}}", "2\\sqrt{2}", 1.0),
    ("\\boxed{2}", "2\\sqrt{2}", 0.0),
    ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", 1.0),
    # fractions vs decimals
    ("The probability is \\boxed{0.5}", "\\frac{1}{2}", 1.0),
    ("The probability is \\boxed{\\frac12}", "0.5", 1.0),
    ("\\boxed{\\dfrac{3}{4}}", "0.75", 1.0),
    ("\\boxed{3/4}", "\\frac{3}{4}", 1.0),
    ("\\boxed{0.75}", "3/4", 1.0),
    ("\\boxed{1.5}", "\\frac{3}{2}", 1.0),
    ("\\boxed{0.33}", "\\frac{1}{3}", 0.0),
    ("\\boxed{-\\frac{1}{2}}", "-0.5", 1.0),
    ("\\boxed{\\frac{-1}{2}}", "-\\frac{1}{2}", 1.0),
    ("\\boxed{10.0}", "10", 1.0),
    # percentages
    ("So 25% of the class passed. The answer is 25%.", "25", 1.0),
    ("The answer is $25\\%$", "0.25", 1.0),
    ("\\boxed{40\\%}", "40\\%", 1.0),
    ("\\boxed{30\\%}", "40\\%", 0.0),
    # sets and tuples
    ("The solutions are \\boxed{\\{1, 2, 3\\}}", "\\{3, 2, 1\\}", 1.0),
    ("The roots are \\boxed{2, -3}", "-3, 2", 1.0),
    ("The roots are \\boxed{2, 3}", "-3, 2", 0.0),
    ("\\boxed{(1, 2)}", "(1,2)", 1.0),
    # intervals
    ("The domain is \\boxed{[0, \\infty)}", "[0,\\infty)", 1.0),
    ("\\boxed{(-\\infty, 3)}", "(-\\infty, 3)", 1.0),
    ("\\boxed{(-\\infty, 3]}", "(-\\infty, 3)", 0.0),
    ("\\boxed{(1, 2]}", "(1,2]", 1.0),
    # equations
    ("The final answer is $x = 3$.", "3", 1.0),
    ("\\boxed{x=3}", "x = 3", 1.0),
    ("\\boxed{x=4}", "3", 0.0),
    ("\\boxed{y = 2x + 1}", "y=1+2x", 1.0),
    ("\\boxed{3}", "x=3", 1.0),
    # text around answers, answer phrases, last expression
    ("**Final Answer:** 42", "42", 1.0),
    ("Final answer: 17", "17", 1.0),
    ("After simplifying we get 12. The answer is 12 apples.", "12", 1.0),
    ("She has 7 apples left.", "7", 1.0),
    ("The area is $12\\pi$ square units.", "12\\pi", 1.0),
    ("The answer is Monday.", "\\text{Monday}", 1.0),
    ("Answer: x**2 + 1", "x^2+1", 1.0),
    ("We find that 3 + 4 = 7.\nAnswer: 7", "7", 1.0),
    ("I think the answer is 8, no wait, it is 9. The answer is 9.", "9", 1.0),
    ("The answer is \\(\\frac{2}{3}\\).", "\\frac{2}{3}", 1.0),
    ("Thus the result is \\[\\frac{5}{6}\\]", "\\frac{5}{6}", 1.0),
    # negatives
    ("The minimum value is -7.", "-7", 1.0),
    ("The minimum value is 7.", "-7", 0.0),
    ("\\boxed{-12}", "-12", 1.0),
    ("\\boxed{\u22125}", "-5", 1.0),
    ("The answer is \u22125", "-5", 1.0),
    # thousands separators
    ("The total cost is \\boxed{1,000}", "1000", 1.0),
    ("The answer is 1,000,000.", "1000000", 1.0),
    ("The answer is 1,234", "1234", 1.0),
    ("\\boxed{1000}", "1,000", 1.0),
    # units
    ("\\boxed{12\\text{ cm}}", "12", 1.0),
    ("\\boxed{12 \\, \\mathrm{cm}^2}", "12", 1.0),
    ("The answer is 90^\\circ", "90", 1.0),
    ("\\boxed{90^{\\circ}}", "90", 1.0),
    ("\\boxed{\\$5.00}", "5", 1.0),
    ("The length is 3.5 meters.", "\\frac{7}{2}", 1.0),
    # symbolic
    ("\\boxed{\\frac{\\pi}{2}}", "\\pi/2", 1.0),
    ("\\boxed{(x+1)^2}", "x^2+2x+1", 1.0),
    ("\\boxed{x+2}", "x+1", 0.0),
    ("\\boxed{2^{10}}", "1024", 1.0),
    ("\\boxed{\\infty}", "\\infty", 1.0),
    ("\\boxed{\\sqrt{2}}", "1.41421356", 1.0),
    ("\\boxed{3.14}", "\\pi", 0.0),
    # no answer / wrong
    ("I don't know.", "5", 0.0),
    ("", "5", 0.0),
]


@pytest.mark.parametrize("response,reference,expected", CASES)
def test_math_equivalence(response, reference, expected):
    result = get_verifier("math")(response, reference)
    assert result.score == expected, result


def test_enough_equivalence_cases():
    assert len(CASES) >= 60


def test_find_boxed_balances_braces_and_takes_the_last_complete_one():
    assert find_boxed(r"\boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert find_boxed(r"\boxed{\{1,2\}}") == r"\{1,2\}"  # escaped braces do not count
    assert find_boxed(r"\boxed{1} then \boxed{2}") == "2"
    assert find_boxed(r"\boxed{1} then \boxed{2") == "1"  # unterminated last one is skipped
    assert find_boxed(r"\boxed {3}") == "3"
    assert find_boxed(r"\fbox{4}") == "4"
    assert find_boxed("no box") is None
    assert find_boxed("\\boxed{" + "{" * 10_000 + "}" * 10_001) is None  # gives up past MAX_SCAN_CHARS


def test_answer_phrase_takes_the_last_one_and_cuts_the_sentence():
    assert find_answer_phrase("The answer is 8. No: the answer is 9. Done.") == "9"
    assert find_answer_phrase("**Final Answer:** $x=2$ and more") == "x=2"
    assert find_answer_phrase("The answer is 3.5 today.") == "3.5 today"  # the decimal point is kept
    assert find_answer_phrase("To answer this we compute") is None


def test_clean_answer():
    assert clean_answer("**42**.") == "42"
    assert clean_answer("12 apples") == "12"
    assert clean_answer("50%") == r"50\%"
    assert clean_answer("x**2") == "x^2"
    assert clean_answer("\u22125") == "-5"  # unicode minus
    assert clean_answer("\\(\\frac12\\)") == "\\frac12"


def test_extraction_priority():
    # boxed beats "answer is", which beats the last number
    assert extract_final_answer(r"The answer is 3, i.e. \boxed{4}. Then 5.") == ("4", "boxed")
    assert extract_final_answer("The answer is 3. Then 5.") == ("3", "answer phrase")
    assert extract_final_answer("We get 3 and then 5.") == ("5", "last expression")
    assert extract_final_answer("nothing here") == (None, "no final answer found")


def test_unreadable_reference_is_ungradable_not_wrong():
    assert get_verifier("math")(r"\boxed{5}", "").score is None
    assert get_verifier("math")(r"\boxed{\text{Monday}}", r"\text{Monday}").score == 1.0


# ---------------------------------------------------------------- adversarial, through the service

TIMEOUT_S = 1.0  # adversarial answers may legitimately end as None; a low limit keeps the test short
REFERENCES = {"math": "5", "arithmetic": "42", "exact_match": "x", "multiple_choice": "B",
              "countdown": '{"numbers": [1, 2, 3], "target": 6}'}


def adversarial(marker: str) -> list[str]:
    inject = f"__import__('os').system('touch {marker}')"
    return [
        "", "   \n\t  ", "1" * 1_000_000, "x" * 1_000_000, "{" * 1_000_000,
        "\\boxed{" * 100_000,  # 700 kB of unterminated boxes
        "\\boxed{" + "{" * 50_000 + "1" + "}" * 50_001,  # deep braces
        "\\boxed{" + "\\frac{" * 30 + "1" + "}{2}" * 30 + "}",  # deep \frac within the length cap
        "\\boxed{" + "\\frac{" * 500 + "1" + "}{2}" * 500 + "}",  # deep \frac past the cap
        "\\frac{" * 100_000,  # unterminated \frac
        "$" * 1_000_000,
        "\\boxed{" + "(" * 150 + "1" + ")" * 150 + "}", "\\boxed{" + "(" * 9 + "1" + ")" * 9 + "}",
        "\\boxed{10^{10^{10^{10}}}}", "The answer is $10^{10^{10^{10}}}$", "\\boxed{9^{9^{9^{9^{9}}}}}",
        "\\boxed{(10^{100})!}", "\\boxed{1e999999999}", "\\boxed{x^{x^{x^{x^{x^{x}}}}}}",
        "\\boxed{\\sum_{n=1}^{10^{12}} n^{n}}",
        "\\boxed{\uff14\uff12}", "\\boxed{\u0664\u0662}", "\\boxed{4\u200b2}", "\\boxed{\u202e24}",
        "\\boxed{\u216b}", "\\boxed{\u0412}",  # Roman numeral twelve, Cyrillic capital Ve (looks like B)
        "\x00" * 1000 + "\\boxed{\x00}", "\ud800\\boxed{5\udfff}",  # NULs, lone surrogates
        inject, f"\\boxed{{{inject}}}", f"Answer: (lambda: {inject})()", f"<answer>{inject}</answer>",
        f"<answer>1+2+3+{inject}</answer>", "\\boxed{\\input{/etc/passwd}}", "\\boxed{\\def\\x{\\x x}\\x}",
        "\\boxed{\\begin{pmatrix}" + "1&" * 100 + "1\\end{pmatrix}}",
    ]


@pytest.fixture(scope="module")
def service():
    svc = RewardService(num_workers=2, timeout_s=TIMEOUT_S)
    yield svc
    svc.close()


def test_adversarial_responses_never_raise_hang_or_execute(service, tmp_path):
    marker = str(tmp_path / "pwned")
    responses = adversarial(marker)
    assert len(responses) >= 25
    requests = [(name, r, ref) for r in responses for name, ref in REFERENCES.items()]
    results, report = service.grade(requests)
    assert len(results) == len(requests) == report.num_graded
    for (name, response, _), result in zip(requests, results):
        assert isinstance(result, VerifyResult)
        assert result.score is None or 0.0 <= result.score <= 1.0, (name, response[:60], result)
        assert result.score != 1.0 or "\uff14" in response, (name, response[:60], result)  # NFKC: 42
        if result.score is None:
            assert result.reason, result
    # Each answer either finished or was cut at TIMEOUT_S; slack for two busy shared cores.
    assert report.seconds < TIMEOUT_S * report.num_timeouts + 40, report
    assert not os.path.exists(marker), "a code-injection string was executed"
    # the pool is still healthy afterwards
    again, _ = service.grade([("math", r"\boxed{5}", "5"), ("arithmetic", "42", "42")])
    assert [r.score for r in again] == [1.0, 1.0]
