"""Small verifiers: ``arithmetic`` (exact integer), ``exact_match``, ``multiple_choice`` (A-E) and
``countdown`` (an arithmetic expression over given numbers, read by a recursive-descent parser over
integers, + - * / and parentheses with exact Fractions; nothing is ever eval'd).
Must not import ray, vllm or deepspeed (torch comes in only through rlsys.types).
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from fractions import Fraction

from rlsys.reward.math_verifier import TAIL_CHARS, find_answer_phrase, find_boxed
from rlsys.reward.verifiers import register_verifier
from rlsys.types import VerifyResult

_LOOKALIKES = str.maketrans({"\u2212": "-", "\u2013": "-", "\u00d7": "*", "\u00f7": "/", "\u22c5": "*"})
_INT_RE = re.compile(r"-?[0-9]+")  # ASCII digits only: '\d' would also accept other scripts' digits
_CANON_INT_RE = re.compile(r"([+-]?)([0-9]+)")
MAX_EXPR_CHARS = 200  # a countdown expression longer than this is refused before parsing
MAX_PAREN_DEPTH = 32  # bounds the parser's recursion


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_LOOKALIKES)


def _canonical_int(text: str) -> str | None:
    """"-007" -> "-7", "+3" -> "3", "-0" -> "0"; None if ``text`` is not an integer. Compared as
    strings so that a 10,000-digit answer costs nothing (int() refuses > 4300 digits)."""
    m = _CANON_INT_RE.fullmatch(text.strip())
    if m is None:
        return None
    digits = m.group(2).lstrip("0") or "0"
    return "-" + digits if m.group(1) == "-" and digits != "0" else digits


@register_verifier("arithmetic")
def verify_arithmetic(response: str, reference: str) -> VerifyResult:
    """1.0 iff the last integer in ``response`` (an optional leading '-') equals the integer
    ``reference``; 0.0 if it differs or there is none; None if the reference is not an integer."""
    ref = _canonical_int(reference)
    if ref is None:
        return VerifyResult(None, None, f"reference {reference[:40]!r} is not an integer")
    last = None
    for last in _INT_RE.finditer(_normalise(response)):
        pass
    if last is None:
        return VerifyResult(0.0, None, "no integer found")
    got = _canonical_int(last.group(0))
    return VerifyResult(1.0 if got == ref else 0.0, got[:80], "equal" if got == ref else "different")


def _norm_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@register_verifier("exact_match")
def verify_exact_match(response: str, reference: str) -> VerifyResult:
    """1.0 iff response and reference are equal after NFKC, case folding and whitespace collapsing."""
    got = _norm_text(response)
    ok = got == _norm_text(reference)
    return VerifyResult(1.0 if ok else 0.0, got[:80], "equal" if ok else "different")


_LETTER_RE = re.compile(r"(?<![A-Za-z])([A-E])(?![A-Za-z])")
_WHOLE_CHOICE_RE = re.compile(r"[\s*(\[]*([A-Ea-e])[\s*)\].:]*")
_PAREN_CHOICE_RE = re.compile(r"\(([A-E])\)")


def extract_choice(response: str) -> tuple[str | None, str]:
    """(letter A-E or None, where it came from): \\boxed{}, "answer is", the whole reply being one
    letter, the last "(X)", or a last line that is one letter."""
    text = _normalise(response)
    whole = _WHOLE_CHOICE_RE.fullmatch(text.strip()[:20])
    if whole:
        return whole.group(1).upper(), "whole response"
    for source, finder in (("boxed", find_boxed), ("answer phrase", find_answer_phrase)):
        found = finder(text)
        m = _LETTER_RE.search(found) if found else None
        if m:
            return m.group(1), source
    tail = text[-TAIL_CHARS:]
    parens = _PAREN_CHOICE_RE.findall(tail)
    if parens:
        return parens[-1], "last (X)"
    lines = tail.strip().splitlines()
    last_line = _WHOLE_CHOICE_RE.fullmatch(lines[-1].strip()) if lines else None
    if last_line:
        return last_line.group(1).upper(), "last line"
    return None, "no choice letter found"


@register_verifier("multiple_choice")
def verify_multiple_choice(response: str, reference: str) -> VerifyResult:
    """1.0 iff the extracted letter equals the reference letter ("B", "(b)", "B." all read as B)."""
    ref = _WHOLE_CHOICE_RE.fullmatch(reference.strip())
    if ref is None:
        return VerifyResult(None, None, f"reference {reference[:40]!r} is not a letter A-E")
    got, source = extract_choice(response)
    if got is None:
        return VerifyResult(0.0, None, source)
    ok = got == ref.group(1).upper()
    return VerifyResult(1.0 if ok else 0.0, got, f"{source}: {'equal' if ok else 'different'}")


# ---------------------------------------------------------------- countdown

_TOKEN_RE = re.compile(r"\s*(?:([0-9]+)|([-+*/()]))")
_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_LATEX_OPS = (("\\times", "*"), ("\\cdot", "*"), ("\\div", "/"), ("\\left", ""), ("\\right", ""))


class ExprError(ValueError):
    """The expression is malformed (not a model-crashing condition: it scores 0)."""


def tokenize(expr: str) -> list[tuple[str, str]]:
    """[("num", "25"), ("op", "+"), ...]; raises ExprError on any other character."""
    tokens, pos, expr = [], 0, expr.rstrip()
    while pos < len(expr):
        m = _TOKEN_RE.match(expr, pos)
        if m is None:
            raise ExprError(f"unexpected character {expr[pos]!r}")
        tokens.append(("num", m.group(1)) if m.group(1) else ("op", m.group(2)))
        pos = m.end()
    return tokens


class _Parser:
    """expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ;
    factor := INT | '(' expr ')'. No unary minus, as in the countdown game."""

    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens, self.i, self.depth = tokens, 0, 0

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def parse(self) -> Fraction:
        value = self.expr()
        if self.i != len(self.tokens):
            raise ExprError(f"unexpected {self.peek()!r}")
        return value

    def expr(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.tokens[self.i][1]
            self.i += 1
            value = value + self.term() if op == "+" else value - self.term()
        return value

    def term(self) -> Fraction:
        value = self.factor()
        while self.peek() in ("*", "/"):
            op = self.tokens[self.i][1]
            self.i += 1
            rhs = self.factor()
            if op == "/" and rhs == 0:
                raise ExprError("division by zero")
            value = value * rhs if op == "*" else value / rhs
        return value

    def factor(self) -> Fraction:
        if self.i >= len(self.tokens):
            raise ExprError("expression ends early")
        kind, text = self.tokens[self.i]
        self.i += 1
        if kind == "num":
            return Fraction(int(text))
        if text != "(":
            raise ExprError(f"unexpected {text!r}")
        self.depth += 1
        if self.depth > MAX_PAREN_DEPTH:
            raise ExprError("parentheses nested too deep")
        value = self.expr()
        if self.peek() != ")":
            raise ExprError("unclosed parenthesis")
        self.i += 1
        self.depth -= 1
        return value


def evaluate_expression(expr: str) -> Fraction:
    """Exact value of an integer + - * / ( ) expression; raises ExprError if malformed."""
    if len(expr) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} chars")
    return _Parser(tokenize(expr)).parse()


def extract_expression(response: str) -> str | None:
    """The countdown answer: the last <answer>..</answer>, \\boxed{}, "answer is ...", else the last
    line; LaTeX/unicode operators mapped to * and /, and of "expr = target" the side with an operator."""
    text = _normalise(response)
    tags = _ANSWER_TAG_RE.findall(text[-TAIL_CHARS:])
    found = tags[-1] if tags else find_boxed(text) or find_answer_phrase(text)
    if found is None:
        lines = text[-TAIL_CHARS:].strip().splitlines()
        found = lines[-1] if lines else None
    if found is None:
        return None
    for latex, op in _LATEX_OPS:
        found = found.replace(latex, op)
    found = found.replace("$", "").replace("{", "(").replace("}", ")").strip().rstrip(".")
    sides = [s.strip() for s in found.split("=") if s.strip()]
    with_op = [s for s in sides if re.search(r"[-+*/]", s)]
    return (with_op or sides or [None])[0]


def _read_countdown_reference(reference: str) -> tuple[Counter, Fraction, bool]:
    ref = json.loads(reference)
    numbers = Counter(int(x) for x in ref["numbers"])
    return numbers, Fraction(ref["target"]), bool(ref.get("use_all", False))


@register_verifier("countdown")
def verify_countdown(response: str, reference: str) -> VerifyResult:
    """Reference: JSON ``{"numbers": [..], "target": N, "use_all": false}``. 1.0 iff the expression
    equals the target exactly and uses each given number at most once (every one exactly once when
    ``use_all``); 0.0 otherwise; None if the reference is malformed."""
    try:
        numbers, target, use_all = _read_countdown_reference(reference)
    except (ValueError, KeyError, TypeError) as exc:
        return VerifyResult(None, None, f"bad countdown reference: {exc}")
    expr = extract_expression(response)
    if not expr:
        return VerifyResult(0.0, None, "no expression found")
    try:
        used = Counter(int(t) for kind, t in tokenize(expr[:MAX_EXPR_CHARS + 1]) if kind == "num")
        if used - numbers:
            extra = sorted((used - numbers).elements())
            return VerifyResult(0.0, expr[:80], f"uses numbers not given (or too often): {extra}")
        if use_all and used != numbers:
            return VerifyResult(0.0, expr[:80], "does not use every number")
        value = evaluate_expression(expr)
    except ExprError as exc:
        return VerifyResult(0.0, expr[:80], f"invalid expression: {exc}")
    ok = value == target
    return VerifyResult(1.0 if ok else 0.0, expr[:80], f"= {value}: {'hits' if ok else 'misses'} target {target}")
