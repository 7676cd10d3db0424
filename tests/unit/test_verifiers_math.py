"""The ``math`` verifier: equivalence on real answer styles (each case with its expected verdict), the
extraction helpers, and one test per deliberate difference from math-verify (docs/grading.md).
Adversarial answers are in test_verifiers_math_adversarial.py, the written-forms property test in
test_verifiers_math_property.py."""
import pytest

from rlsys.reward.math_verifier import (bare_answer_span, find_answer_phrase, find_boxed, find_boxes, join_spaced_thousands,
                                        normalize_text, parse_plain, read_response)
from rlsys.reward.verifiers import get_verifier

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
    ("\\boxed{\\sqrt{2}/2}", "\\frac{1}{\\sqrt2}", 1.0),
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
    ("So the slope is \\dfrac{4}{6}", "\\frac23", 1.0),
    ("The answer is 23/6.", "\\frac{23}{6}", 1.0),
    ("\\boxed{10.0}", "10", 1.0),
    ("The answer is $3 \\frac{1}{2}$", "\\frac72", 1.0),  # mixed number
    # bare \frac (no $), read as the fraction, not its last number
    ("\\frac{10}{9}", "\\frac{10}{9}", 1.0),
    ("\\frac{10}{9}", "9", 0.0),
    ("-\\frac{10}{9}", "-\\frac{10}{9}", 1.0),
    ("-\\frac{10}{9}", "\\frac{10}{9}", 0.0),
    ("so the ratio is \\frac{3}{7}", "\\frac37", 1.0),
    ("The final ratio is \\frac{12}{5}.", "2.4", 1.0),
    # a leading decimal point
    (".4", "0.4", 1.0),
    (".4", "4", 0.0),
    ("The answer is .75", "\\frac34", 1.0),
    ("The change in temperature is -.5 degrees.", "-\\frac12", 1.0),
    ("Final answer: .125", "\\frac18", 1.0),
    # digits inside a word are not a number
    ("The code word is AZYUK2A", "2", 0.0),
    ("Answer: B2B", "2", 0.0),
    ("The plate reads XJ7Q.", "7", 0.0),
    ("The answer is XJ7Q.", "\\text{XJ7Q}", 1.0),
    # a solution set written box by box
    ("\\boxed{(2, 2)} \\text{ and } \\boxed{(6, 2)}", "(2, 2), (6, 2)", 1.0),
    ("\\boxed{(2, 2)} \\text{ and } \\boxed{(6, 2)}", "(6, 2)", 0.0),
    ("\\boxed{1}, \\boxed{2}, \\boxed{3}", "1, 2, 3", 1.0),
    ("\\boxed{1}, \\boxed{2}, \\boxed{3}", "\\{1,2,3\\}", 1.0),
    ("\\boxed{1}, \\boxed{2}, \\boxed{3}", "3", 0.0),  # a list of candidates is not the answer 3
    ("\\boxed{1}, \\boxed{2}", "1, 2, 3", 0.0),
    ("The roots are $\\boxed{-1}$ and $\\boxed{4}$.", "4, -1", 1.0),
    ("We first guessed \\boxed{1}. That fails the check, so the solutions are \\boxed{2} and \\boxed{5}.", "2, 5", 1.0),
    # the final answer in prose after inline maths
    ("Final Answer: The largest $n$ is 34.", "34", 1.0),
    ("Final Answer: The largest $n$ is 34.", "n", 0.0),
    ("Therefore, the value of $k$ is 7.", "7", 1.0),
    ("Since $a+b=10$ and $a-b=4$, we get $a=7$. Final Answer: The final answer is 7. I hope it is correct.", "7", 1.0),
    ("Let $m$ be the number of marbles. Then $m = 3 \\cdot 4 = 12$. So Tom has 12 marbles.", "12", 1.0),
    # factorials, superscripts, percent words, spaced and comma-decimal numbers
    ("\\boxed{5!}", "120", 1.0),
    ("\\boxed{5!}", "5", 0.0),
    ("\\boxed{3!\\cdot 2}", "12", 1.0),
    ("The answer is x\u2074\u00b2", "x^{42}", 1.0),
    ("The answer is x\u2074\u00b2", "42", 0.0),
    ("The answer is 2\u00b3", "8", 1.0),
    ("The answer is 12.5 percent", "12.5\\%", 1.0),
    ("The answer is 40 percent", "40\\%", 1.0),
    ("The population is 1 000 people.", "1000", 1.0),
    ("\\boxed{1 000}", "1000", 1.0),
    ("\\boxed{12\\,345}", "12345", 1.0),
    ("The total is 1000,99", "1000.99", 1.0),
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
    ("\\boxed{(2, 1)}", "(1,2)", 0.0),
    # intervals
    ("The domain is \\boxed{[0, \\infty)}", "[0,\\infty)", 1.0),
    ("\\boxed{(-\\infty, 3)}", "(-\\infty, 3)", 1.0),
    ("\\boxed{(-\\infty, 3]}", "(-\\infty, 3)", 0.0),
    ("\\boxed{(1, 2]}", "(1,2]", 1.0),
    ("\\boxed{(-\\infty, -1) \\cup (1, \\infty)}", "(-\\infty,-1)\\cup(1,\\infty)", 1.0),
    # equations
    ("The final answer is $x = 3$.", "3", 1.0),
    ("\\boxed{x=3}", "x = 3", 1.0),
    ("\\boxed{x=4}", "3", 0.0),
    ("\\boxed{y = 2x + 1}", "y=1+2x", 1.0),
    ("\\boxed{3}", "x=3", 1.0),
    ("\\boxed{x^2 - 1 = 0}", "x^2 = 1", 1.0),
    # text around answers, answer phrases, last expression
    ("**Final Answer:** 42", "42", 1.0),
    ("Final answer: 17", "17", 1.0),
    ("After simplifying we get 12. The answer is 12 apples.", "12", 1.0),
    ("She has 7 apples left.", "7", 1.0),
    ("The area is $12\\pi$ square units.", "12\\pi", 1.0),
    ("The answer is Monday.", "\\text{Monday}", 1.0),
    ("The answer is Tuesday.", "\\text{Monday}", 0.0),
    ("\\boxed{x**2 + 1}", "x^2+1", 1.0),
    ("We find that 3 + 4 = 7.\nAnswer: 7", "7", 1.0),
    ("I think the answer is 8, no wait, it is 9. The answer is 9.", "9", 1.0),
    ("The answer is \\(\\frac{2}{3}\\).", "\\frac{2}{3}", 1.0),
    ("Thus the result is \\[\\frac{5}{6}\\]", "\\frac{5}{6}", 1.0),
    ("The answer is 2^2^2", "16", 1.0),  # plain powers are right-associative: 2^(2^2)
    ("The answer is (1+2)*3", "9", 1.0),
    # negatives
    ("The minimum value is -7.", "-7", 1.0),
    ("The minimum value is 7.", "-7", 0.0),
    ("\\boxed{-12}", "-12", 1.0),
    ("\\boxed{\u22125}", "-5", 1.0),
    ("The answer is \u22125", "-5", 1.0),
    ("The answer is \u22125", "5", 0.0),
    # thousands separators
    ("The total cost is \\boxed{1,000}", "1000", 1.0),
    ("The answer is 1,000,000.", "1000000", 1.0),
    ("The answer is 1,234", "1234", 1.0),
    ("\\boxed{1000}", "1,000", 1.0),
    # units and currency
    ("\\boxed{12\\text{ cm}}", "12", 1.0),
    ("\\boxed{12 \\, \\mathrm{cm}^2}", "12", 1.0),
    ("\\boxed{12\\text{ cm}^2}", "12", 1.0),
    ("The answer is 90^\\circ", "90", 1.0),
    ("\\boxed{90^{\\circ}}", "90", 1.0),
    ("\\boxed{\\$5.00}", "5", 1.0),
    ("The cost is \\$12.", "12", 1.0),
    ("The length is 3.5 meters.", "\\frac{7}{2}", 1.0),
    # symbolic
    ("\\boxed{\\frac{\\pi}{2}}", "\\pi/2", 1.0),
    ("\\boxed{(x+1)^2}", "x^2+2x+1", 1.0),
    ("\\boxed{x+2}", "x+1", 0.0),
    ("\\boxed{2^{10}}", "1024", 1.0),
    ("\\boxed{2 \\cdot 10^3}", "2000", 1.0),
    ("\\boxed{\\infty}", "\\infty", 1.0),
    ("\\boxed{\\sqrt{2}}", "1.41421356", 1.0),
    ("\\boxed{3.14}", "\\pi", 0.0),
    ("\\boxed{\\log_2 8}", "3", 1.0),
    ("\\boxed{\\cos 0}", "1", 1.0),
    ("\\boxed{\\begin{pmatrix}1\\\\2\\end{pmatrix}}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", 1.0),
    ("\\boxed{\\binom{5}{2}}", "10", 1.0),
    ("\\boxed{\\sum_{k=1}^{10} k}", "55", 1.0),
    ("\\boxed{\\prod_{k=1}^{4} k}", "24", 1.0),
    ("\\boxed{e^{0}}", "1", 1.0),
    # a bare expression after the answer phrase is read whole, not its last number
    ("The answer is 2\\sqrt{2}.", "2", 0.0),
    ("The answer is 2\\sqrt{2}.", "2\\sqrt{2}", 1.0),
    ("Answer: x**2 + 1", "1", 0.0),
    ("Answer: x**2 + 1", "x^2+1", 1.0),
    ("The answer is (1, 2).", "2", 0.0),
    ("The answer is (1, 2).", "(1,2)", 1.0),
    ("The answer is 12\u03c0.", "12", 0.0),
    ("The answer is 12\u03c0.", "12\\pi", 1.0),
    ("The answer is 3x+1.", "1", 0.0),
    ("The answer is 3x+1.", "3x+1", 1.0),
    ("The answer is -\\frac{1}{2}.", "-1/2", 1.0),
    ("The answer is 5 apples.", "5", 1.0),
    ("The final answer is 7", "7", 1.0),
    ("The answer is 3\\sqrt{5} + 1.", "1", 0.0),
    ("The answer is x = 4.", "4", 1.0),
    ("The answer is 3, since 5 - 2 = 3.", "3", 1.0),
    ("Answer: 2 or 3", "3", 0.0),  # a hedge read whole is the set {2, 3}: it never pays
    # boxes with the variable written before each
    ("x = \\boxed{2} or x = \\boxed{-3}", "2, -3", 1.0),
    ("x = \\boxed{3} or x = \\boxed{4}", "4", 0.0),
    ("x_1 = \\boxed{1}, x_2 = \\boxed{5}", "1, 5", 1.0),
    # multiple choice letters in a box
    ("\\boxed{A}", "A", 1.0),
    ("\\boxed{(B)}", "B", 1.0),
    ("\\boxed{B}", "A", 0.0),
    # no answer / wrong
    ("I don't know.", "5", 0.0),
    ("", "5", 0.0),
]


@pytest.mark.parametrize("response,reference,expected", CASES)
def test_math_equivalence(response, reference, expected):
    result = get_verifier("math")(response, reference)
    assert result.score == expected, result
    assert not result.guard_rejected, result


def test_enough_equivalence_cases():
    assert len(CASES) >= 120


def test_find_boxed_balances_braces_and_takes_the_last_complete_one():
    assert find_boxed(r"\boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert find_boxed(r"\boxed{\{1,2\}}") == r"\{1,2\}"  # escaped braces do not count
    assert find_boxed(r"\boxed{1} then \boxed{2}") == "2"
    assert find_boxed(r"\boxed{1} then \boxed{2") == "1"  # unterminated last one is skipped
    assert find_boxed(r"\boxed {3}") == "3"
    assert find_boxed(r"\fbox{4}") == "4"
    assert find_boxed("no box") is None
    assert find_boxed("\\boxed{" + "{" * 10_000 + "}" * 10_001) is None  # gives up past MAX_SCAN_CHARS


def test_find_boxes_reads_a_list_of_boxes_but_not_boxes_with_prose_between():
    assert find_boxes(r"\boxed{1}, \boxed{2} and \boxed{3}") == ["1", "2", "3"]
    assert find_boxes(r"$\boxed{1}$ \text{ or } $\boxed{2}$.") == ["1", "2"]
    assert find_boxes(r"\boxed{1}. But that is wrong, so \boxed{2}") == ["2"]
    assert find_boxes("nothing") == []


def test_answer_phrase_takes_the_last_one_and_cuts_the_sentence():
    assert find_answer_phrase("The answer is 8. No: the answer is 9. Done.") == "9"
    assert find_answer_phrase("**Final Answer:** $x=2$ and more") == "x=2"
    assert find_answer_phrase("The answer is 3.5 today.") == "3.5 today"  # the decimal point is kept
    assert find_answer_phrase("To answer this we compute") is None


def test_bare_answer_span_is_an_expression_or_none():
    assert bare_answer_span("So the answer is 2\\sqrt{2}. Done.") == "2\\sqrt{2}"
    assert bare_answer_span("**Answer:** (1, 2)**") == "(1, 2)"
    assert bare_answer_span("The answer is \\sin x + \\pi.") == "\\sin x + \\pi"
    assert bare_answer_span("The answer is x = 3 or x = 5.") == "x = 3 or x = 5"
    for prose in ("The answer is 5 apples.", "The answer is $5$.", "The answer is \\boxed{5}",
                  "The answer is 3, since 2+1=3.", "The answer is XJ7Q.", "The answer is \\foo{2}",
                  "The answer is it.", "No phrase 2\\sqrt{2}."):
        assert bare_answer_span(prose) is None, prose


def test_boxes_after_variable_names_form_one_set():
    # "x =" before each box is part of one list of solutions (math-verify reads these as a set too);
    # prose between boxes still leaves only the last one, and a hedge against a single value never pays
    assert grade("x = \\boxed{2} or x = \\boxed{-3}", "2, -3") == 1.0
    assert grade("x = \\boxed{3} or x = \\boxed{4}", "4") == 0.0
    assert grade("\\boxed{3}, \\boxed{4}", "4") == 0.0
    assert find_boxes("x = \\boxed{2} or x = \\boxed{-3}") == ["2", "-3"]
    assert find_boxes("\\boxed{2}. So y = \\boxed{3}") == ["3"]  # prose between: the last box


def test_plain_grammar_is_right_associative_and_evaluates_nothing():
    import sympy

    assert parse_plain("2^3^2") == sympy.Pow(2, sympy.Pow(3, 2, evaluate=False), evaluate=False)
    assert parse_plain("2^3^2").doit() == 2 ** 9
    assert sympy.simplify(parse_plain("(1 + 2) * 3 - 4 / 2") - 7) == 0
    assert parse_plain("9^9^9^9") is not None  # built unevaluated: the guard decides what it costs
    for junk in ("__import__('os')", "2 +", "(1", "x+1", ""):
        assert parse_plain(junk) is None, junk


def test_read_response_sources():
    assert read_response(r"The answer is 3, i.e. \boxed{4}. Then 5.").source == "boxed"
    assert read_response("The answer is 3. Then 5.").source == "bare answer"
    assert read_response("The answer is 3, since 5 - 2 = 3.").source == "search"  # prose: the search
    assert read_response(r"\boxed{1}, \boxed{2}").source == "boxed set"
    assert read_response("The answer is Monday.").source == "answer phrase"
    assert read_response("nothing here").source == "no final answer found"


def test_unreadable_reference_is_ungradable_not_wrong():
    assert get_verifier("math")(r"\boxed{5}", "").score is None
    assert get_verifier("math")(r"\boxed{\text{Monday}}", r"\text{Monday}").score == 1.0


# ---------------------------------------------------------------- deliberate differences from math-verify
# One test per difference listed in docs/grading.md; each comment says how math-verify 0.9.0's
# parse/verify (default extraction, gold as $reference$) grades the same strings.

def grade(response: str, reference: str):
    return get_verifier("math")(response, reference).score


def test_difference_unicode_minus_is_a_minus():
    # math-verify finds no answer in "−5" (U+2212) and grades 0
    assert normalize_text("\u22125 \u2013 3") == "-5 - 3"
    assert grade("\\boxed{\u22125}", "-5") == 1.0 and grade("The answer is \u22125", "5") == 0.0


def test_difference_escaped_dollar_is_currency():
    # math-verify finds nothing in "The cost is \$12." and grades 0
    assert grade("The cost is \\$12.", "12") == 1.0
    assert grade("\\boxed{\\$5.00}", "5") == 1.0  # the same in a box (math-verify agrees here)


def test_difference_last_box_after_a_self_correction():
    # math-verify reads "\boxed{3}, but correcting it: \boxed{4}" as the set {3, 4} and grades 0 against 4;
    # boxes written as one list (only commas/"and" between) stay a set for us too, so hedging never pays
    assert grade("First we get \\boxed{3}, but correcting it: \\boxed{4}", "4") == 1.0
    assert grade("First we get \\boxed{3}, but correcting it: \\boxed{4}", "3") == 0.0
    assert grade("\\boxed{3}, \\boxed{4}", "4") == 0.0


def test_difference_fbox_is_a_box():
    # math-verify reads only \boxed, finds nothing in "\fbox{12}" and grades 0
    assert grade("\\fbox{12}", "12") == 1.0 and grade("\\fbox{12}", "13") == 0.0


def test_difference_superscript_digits_are_exponents():
    # math-verify finds nothing in "x⁴²" (our old verifier read 42 after NFKC)
    assert normalize_text("x\u2074\u00b2") == "x^{42}" and normalize_text("2\u00b3") == "2^3"
    assert grade("The answer is x\u2074\u00b2", "x^{42}") == 1.0


def test_difference_leading_decimal_point_keeps_its_sign():
    # math-verify reads ".5" but finds no number in "-.5" (its pattern wants a digit after the minus)
    assert normalize_text("-.5 and .25 but v.2") == "-0.5 and 0.25 but v.2"
    assert grade("The change in temperature is -.5 degrees.", "-\\frac12") == 1.0


def test_difference_python_power_in_a_box():
    # math-verify reads \boxed{x**2 + 1} as 1 and grades 0 against x^2+1
    assert normalize_text("x**2 and **bold** 3**2") == "x^2 and **bold** 3^2"
    assert grade("\\boxed{x**2 + 1}", "x^2+1") == 1.0


def test_difference_spaced_thousands_in_latex():
    # math-verify reads \boxed{1 000} as the product 1*000 = 0
    assert join_spaced_thousands("1 000 and 12\\,345 and 1{,}000 but 1 2") == "1000 and 12345 and 1000 but 1 2"
    assert grade("\\boxed{1 000}", "1000") == 1.0 and grade("\\boxed{1 000}", "0") == 0.0


def test_difference_word_answer_after_the_answer_phrase():
    # math-verify extracts nothing from "The answer is Monday." and grades 0
    assert grade("The answer is Monday.", "\\text{Monday}") == 1.0
    assert grade("The answer is Monday.", "\\text{Sunday}") == 0.0


def test_difference_plain_expressions_by_our_grammar_not_eval():
    # math-verify hands "2^2^2" to sympy's parse_expr (an eval); we parse it with parse_plain, same value
    assert grade("The answer is 2^2^2", "16") == 1.0


def test_difference_pathological_answer_refused_by_the_guard():
    # math-verify runs \boxed{2^{2^{30}}} in sympy for seconds; the guard grades it 0 in milliseconds
    result = get_verifier("math")("\\boxed{2^{2^{30}}}", "5")
    assert result.score == 0.0 and result.guard_rejected


def test_difference_pathological_reference_is_ungradable():
    result = get_verifier("math")("\\boxed{5}", "9^{9^{9}}")
    assert result.score is None and result.guard_rejected


def test_difference_bare_dfrac_is_a_fraction():
    # math-verify's bare-fraction pattern knows only \frac: it finds nothing in "\dfrac{190}{18}"
    assert normalize_text("\\dfrac{1}{2} + \\tfrac{1}{3} but \\dfracx") == "\\frac{1}{2} + \\frac{1}{3} but \\dfracx"
    assert grade("\\dfrac{190}{18}", "\\frac{95}{9}") == 1.0


def test_difference_bare_expression_after_the_answer_phrase_is_read_whole():
    # math-verify's search reads the last number of a bare expression after "The answer is"/"Answer:":
    # 2\sqrt{2} as 2, x**2 + 1 as 1, (1, 2) as 2, 12π as 12, so each grades 1 against that number
    for response, right, hack in [("The answer is 2\\sqrt{2}.", "2\\sqrt{2}", "2"),
                                  ("Answer: x**2 + 1", "x^2+1", "1"),
                                  ("The answer is (1, 2).", "(1,2)", "2"),
                                  ("The answer is 12\u03c0.", "12\\pi", "12"),
                                  ("The answer is 3x+1.", "3x+1", "1")]:
        assert grade(response, right) == 1.0 and grade(response, hack) == 0.0, response
    assert grade("The answer is 2^3^2", "512") == 1.0  # plain arithmetic still by our grammar
    assert grade("The answer is 5 apples.", "5") == 1.0  # prose: math-verify's number search, as before


def test_difference_full_stop_after_a_plain_fraction():
    # math-verify reads "The answer is 23/6." as 23/6.0 (the full stop as a decimal point): a float
    # that its comparison no longer matches with 23/6
    assert grade("The answer is 23/6.", "\\frac{23}{6}") == 1.0
    assert grade("The answer is 23/6.", "\\frac{23}{7}") == 0.0
