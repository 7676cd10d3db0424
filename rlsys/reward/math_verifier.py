"""The ``math`` verifier: the final answer of a worked solution against a reference, on math-verify.

Extraction and equivalence are math-verify's (its LaTeX and plain-number extraction patterns, in its
priority order, and its ``verify``); our own code sits around them only where we deliberately
differ, each difference listed in docs/grading.md with its reason. A static guard
(rlsys.reward.math_guard) refuses pathological answers in milliseconds before sympy sees them;
the grading service's per-answer timeout stays the last line of defence. math-verify's
signal-based timeouts are off (they fail off the main thread). Nothing here evaluates model
output: plain expressions go through a small grammar of our own, not sympy's eval-based
``parse_expr``. Must not import ray, vllm or deepspeed (torch comes in only through rlsys.types).
"""
from __future__ import annotations

import functools
import itertools
import logging
import re
from dataclasses import dataclass
from typing import Optional

from rlsys.reward.math_guard import check_expr, check_text
from rlsys.reward.verifiers import register_verifier
from rlsys.types import VerifyResult

TAIL_CHARS = 2000  # the final answer sits at the end; the extraction patterns only see this tail
MAX_SCAN_CHARS = 5000  # brace matching gives up past this (an unterminated \boxed{ in a megabyte reply)
MAX_BOXED_TRIES = 20  # how many \boxed occurrences, from the last, may be unterminated before giving up
MAX_BOXES = 12  # boxes read together as one solution set

_LOOKALIKES = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": "\\times ",
                             "\u00f7": "\\div ", "\u00a0": " ", "\u2009": " ", "\u202f": " "})
_SUPERSCRIPT = str.maketrans("\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207b\u207a",
                             "0123456789-+")
_SUPERSCRIPT_RUN_RE = re.compile("[\u2070\u00b9\u00b2\u00b3\u2074-\u2079\u207b\u207a]+")
_PY_POWER_RE = re.compile(r"(?<=[\w)}])\*\*(?=[\w({])")  # x**2 (Python power), not **bold**
_FRAC_STYLE_RE = re.compile(r"\\[dt]frac(?![a-zA-Z])")  # \dfrac, \tfrac: display styles of \frac
_LEADING_POINT_RE = re.compile(r"(?<![\w.])\.(?=\d)")  # -.5 -> -0.5 (math-verify reads .5, not -.5)
_SPACED_THOUSANDS_RE = re.compile(r"(?<![\d.,])\d{1,3}(?:(?: |\\,|\\ |\{,\})\d{3})+(?![\d])")
# What may stand between boxes that together give one solution set: "\boxed{1}, \boxed{2} and \boxed{3}"
# (or set equal to a one-letter variable, maybe subscripted: "x = \boxed{2} or x = \boxed{-3}")
_BOX_GAP_RE = re.compile(r"(?:\s|[,;$.]|\\quad|\\qquad|\\,|\\text\{\s*(?:and|or|,)?\s*\}|\band\b|\bor\b"
                         r"|(?<![A-Za-z\\])[A-Za-z](?:_\{?\w{1,3}\}?)?\s*=)*")
_ANSWER_PHRASE_RE = re.compile(r"answer\**\s*(?:is|:|=)[ \t:*]*", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")
# A bare answer (docs/grading.md): no maths delimiter, no box, and no prose
_DELIMITED_RE = re.compile(r"\$|\\\(|\\\[|\\boxed|\\fbox")
_LETTER_RUN_RE = re.compile(r"(?<![A-Za-z\\])[A-Za-z]+")  # letters outside a \command
_WORDLIKE_RE = re.compile(r"(?<![A-Za-z\\])[A-Za-z]+\d")  # B2B, XJ7Q: a word, not a product
_COMMAND_RE = re.compile(r"\\([A-Za-z]+)")
# Letter runs a bare answer may have besides one-letter variables: function names, set connectives
_EXPR_WORDS = frozenset("sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln exp sqrt pi "
                        "or and".split())
_LATEX_COMMANDS = _EXPR_WORDS | frozenset(
    "frac cfrac cdot times div pm mp infty circ le leq ge geq ne neq approx left right theta alpha "
    "beta gamma delta phi varphi tau omega lambda mu sigma rho epsilon varepsilon cup cap emptyset "
    "varnothing in notin mathbb binom dbinom tbinom lfloor rfloor lceil rceil ldots cdots dots "
    "prime".split())
_MATH_SPAN_RE = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)


# ---------------------------------------------------------------- text before extraction

def normalize_text(text: str) -> str:
    """Our pre-normalisation (docs/grading.md): Unicode minus/dashes/times/divide and thin spaces to
    LaTeX, ``\\dfrac``/``\\tfrac`` to ``\\frac``, superscript digits to ``^{..}``, an escaped dollar
    (currency) dropped, a leading decimal point given its 0, Python ``**`` to ``^``."""
    text = _FRAC_STYLE_RE.sub(r"\\frac", text.translate(_LOOKALIKES))
    text = _SUPERSCRIPT_RUN_RE.sub(_superscript, text)
    text = _LEADING_POINT_RE.sub("0.", text.replace("\\$", ""))
    return _PY_POWER_RE.sub("^", text)


def _superscript(m: re.Match) -> str:
    digits = m.group(0).translate(_SUPERSCRIPT)
    return "^" + digits if len(digits) == 1 else "^{" + digits + "}"  # 2³ stays a plain expression


def join_spaced_thousands(latex: str) -> str:
    """``1 000`` / ``1\\,000`` / ``1{,}000`` -> ``1000`` (LaTeX reads the space as a product)."""
    return _SPACED_THOUSANDS_RE.sub(lambda m: re.sub(r"\D", "", m.group(0)), latex)


# ---------------------------------------------------------------- boxes

def _braced_after(text: str, i: int) -> tuple[str, int] | None:
    """(content, index after the closing brace) of the ``{...}`` group at ``text[i]`` (after spaces),
    braces balanced and escaped ``\\{``/``\\}`` not counted; None if there is none or it does not close."""
    n = len(text)
    while i < n and text[i] == " ":
        i += 1
    if i >= n or text[i] != "{":
        return None
    depth, j, stop = 0, i, min(n, i + MAX_SCAN_CHARS)
    while j < stop:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j], j + 1
        j += 1
    return None


def _last_box(text: str, end: int) -> tuple[int, int, str] | None:
    """(start, end, content) of the last complete ``\\boxed{}``/``\\fbox{}`` starting before ``end``."""
    pos = end
    for _ in range(MAX_BOXED_TRIES):
        start, tok_len = max((text.rfind("\\boxed", 0, pos), 6), (text.rfind("\\fbox", 0, pos), 5))
        if start < 0:
            return None
        found = _braced_after(text, start + tok_len)
        if found is not None and found[1] <= end:
            return start, found[1], found[0]
        pos = start
    return None


def find_boxes(text: str) -> list[str]:
    """Contents of the last complete box and of the boxes right before it that are separated from it
    only by commas, "and"/"or" and spacing (one solution set written box by box), in order."""
    boxes: list[str] = []
    end = len(text)
    while len(boxes) < MAX_BOXES:
        box = _last_box(text, end)
        if box is None or (boxes and not _BOX_GAP_RE.fullmatch(text, box[1], end)):
            break
        boxes.append(box[2])
        end = box[0]
    return boxes[::-1]


def find_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` or ``\\fbox{...}`` in ``text``, else None."""
    box = _last_box(text, len(text))
    return None if box is None else box[2]


def _after_answer_phrase(text: str) -> str:
    """The rest of the line after the last "answer is" / "Answer:" / "final answer:" in the tail."""
    tail, match = text[-TAIL_CHARS:], None
    for match in _ANSWER_PHRASE_RE.finditer(tail):
        pass
    return "" if match is None else tail[match.end():].split("\n", 1)[0]


def find_answer_phrase(text: str) -> str | None:
    """What follows the last "answer is" / "Answer:" / "final answer:" on its line, cut at the end
    of the sentence; the first math span in it if it has one."""
    rest = _after_answer_phrase(text)
    if not rest.strip():
        return None
    span = _MATH_SPAN_RE.search(rest)
    if span:
        return next(g for g in span.groups() if g is not None)
    return _SENTENCE_END_RE.split(rest, maxsplit=1)[0]


def bare_answer_span(text: str) -> str | None:
    """The sentence after the last answer phrase when it is a bare expression (``2\\sqrt{2}``,
    ``(1, 2)``, ``x^2 + 1``, ``12\\pi``), else None: it has no ``$``, ``\\(``, ``\\[`` or box, no
    unknown ``\\command``, no letters glued to digits as in a word (``XJ7Q``), and every run of
    letters outside a command is one letter (a variable) or a function name ("5 apples" is prose)."""
    span = _SENTENCE_END_RE.split(_after_answer_phrase(text), maxsplit=1)[0]
    span = span.strip().strip("*").rstrip(".,;:!?").strip()
    if not span or _DELIMITED_RE.search(span) or _WORDLIKE_RE.search(span):
        return None
    if not set(_COMMAND_RE.findall(span)) <= _LATEX_COMMANDS:
        return None
    return span if all(len(w) == 1 or w in _EXPR_WORDS for w in _LETTER_RUN_RE.findall(span)) else None


# ---------------------------------------------------------------- parsing on math-verify

@dataclass(frozen=True)
class Parsed:
    """One answer read: math-verify values (sympy objects or strings), the text they came from,
    where it was found, and why it was refused (None if it was not)."""

    values: tuple
    text: str
    source: str
    refused: Optional[str] = None


@functools.lru_cache(maxsize=1)
def _mv():
    """math-verify, imported lazily so that registering the verifiers stays cheap; its 'timeout disabled'
    warnings are silenced because the grading service enforces the time limit instead."""
    import math_verify
    from math_verify import parser

    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.ERROR)
    latex = math_verify.LatexExtractionConfig(boxed_match_priority=-1)  # boxes are found by find_boxes
    boxed = math_verify.LatexExtractionConfig(boxed_match_priority=0)
    search = parser.get_extraction_regexes([latex, math_verify.ExprExtractionConfig()])
    return math_verify, parser, search, parser.get_extraction_regexes([boxed])


def _answer_span(match: re.Match) -> str:
    """The part of a pattern match that is the answer (without "The final answer is" before it)."""
    starts = [match.start(g) for g, v in match.groupdict().items() if v]
    return match.string[min(starts, default=match.start()):match.end()]


def _read_match(match: re.Match, target, guard: bool) -> tuple[object, Optional[str]]:
    """(value or None, refusal or None) for one pattern match, math-verify's extractor for LaTeX and
    numbers, our grammar (not sympy's eval-based parse_expr) for plain expressions."""
    mv, parser, _, _ = _mv()
    refused = check_text(_answer_span(match)) if guard else None
    if refused:
        return None, refused
    if isinstance(target, mv.LatexExtractionConfig):
        value, _ = parser.extract_latex(match, target)
    elif match.groupdict().get("expr"):
        value = parse_plain(match.group("expr").strip().removesuffix("."))  # "is 23/6." ends a sentence
    else:
        value, _ = parser.extract_expr(match)  # a number: sympy.Number of the digits, no eval
    return value, None


def search_answer(text: str, regexes, guard: bool = True) -> tuple[Optional[Parsed], Optional[Parsed]]:
    """math-verify's extraction order: patterns by priority; within one, the rightmost match first;
    the first match that parses wins. Returns (parsed, refused): the refusal of a match that the
    guard stopped, if that came first."""
    patterns = sorted(((p, t, pr) for ps, t in regexes for p, pr in ps), key=lambda x: x[2])
    for _, group in itertools.groupby(patterns, key=lambda x: x[2]):
        matches = sorted(((m, t) for p, t, _ in group for m in p.finditer(text)),
                         key=lambda mt: (mt[0].end(), -mt[0].start()), reverse=True)
        for match, target in matches:
            value, refused = _read_match(match, target, guard)
            span = _answer_span(match).strip()
            if refused:
                return None, Parsed((), span, "search", refused)
            if value is not None:
                return Parsed((value,), span, "search"), None
    return None, None


def parse_latex_answer(latex: str, source: str, guard: bool = True) -> Parsed:
    """One answer written in LaTeX (a box's content, a reference), read the way math-verify reads
    ``\\boxed{latex}``, after spaced thousands are joined (``1 000`` is 1000, not the product 1*000)."""
    latex = join_spaced_thousands(latex.strip())
    refused = check_text(latex) if guard else None
    if refused:
        return Parsed((), latex, source, refused)
    _, _, _, boxed = _mv()
    found, refusal = search_answer("\\boxed{" + latex + "}", boxed, guard)
    values = found.values if found else ()
    return Parsed(values, latex, source, refusal.refused if refusal else None)


def _union(parts: list[Parsed]) -> Parsed:
    from latex2sympy2_extended.sets import FiniteSet

    elements = []
    for part in parts:
        if part.refused or not part.values or isinstance(part.values[0], str):
            return part
        value = part.values[0]
        elements.extend(value.args if isinstance(value, FiniteSet) else [value])
    return Parsed((FiniteSet(*elements),), ", ".join(p.text for p in parts), "boxed set")


def read_bare_answer(text: str, guard: bool = True) -> Optional[Parsed]:
    """The bare expression after the last answer phrase, read whole (math-verify's search would read
    its last number: "The answer is 2\\sqrt{2}." is not 2): our grammar for plain arithmetic (so
    ``2^3^2`` stays right-associative), else as LaTeX; None if there is none or it does not parse."""
    span = bare_answer_span(text)
    if span is None:
        return None
    refused = check_text(span) if guard else None
    if refused:
        return Parsed((), span, "bare answer", refused)
    plain = parse_plain(span)
    if plain is not None:
        return Parsed((plain,), span, "bare answer")
    parsed = parse_latex_answer(span, "bare answer", guard)
    return parsed if parsed.values or parsed.refused else None


def read_response(response: str, guard: bool = True) -> Parsed:
    """The final answer of a worked solution: the last complete box, or the set of the boxes that end
    it when several are written as one list (``\\boxed{1}, \\boxed{2}``: a list of candidates is graded
    as the set it is, so hedging never pays); else the bare expression after the last answer phrase,
    read whole; else math-verify's search of the tail; else the text after "The answer is" (a word
    answer such as "Monday")."""
    text = normalize_text(response)
    boxes = find_boxes(text)
    if len(boxes) > 1:
        return _union([parse_latex_answer(b, "boxed", guard) for b in boxes])
    if boxes:
        return parse_latex_answer(boxes[0], "boxed", guard)
    bare = read_bare_answer(text, guard)
    if bare is not None:
        return bare
    _, _, search, _ = _mv()
    found, refusal = search_answer(text[-TAIL_CHARS:], search, guard)
    if found or refusal:
        return found or refusal
    phrase = (find_answer_phrase(text) or "").strip().strip("*$").rstrip(".,;:!?").strip()
    return Parsed((), phrase or "", "answer phrase" if phrase else "no final answer found")


@functools.lru_cache(maxsize=8192)
def read_reference(reference: str, guard: bool = True) -> Parsed:
    """A reference answer: plain LaTeX (``\\frac{3}{4}``, ``-3, 2``), or a solution with a box/``$``."""
    text = normalize_text(reference)
    if "\\boxed" in text or "\\fbox" in text or "$" in text:
        return read_response(text, guard)
    return parse_latex_answer(text, "reference", guard)


# ---------------------------------------------------------------- plain expressions, our grammar

_PLAIN_TOKEN_RE = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|(.))")


def parse_plain(expr: str):
    """``2^3^2``, ``(1+2)*3``, ``7/2`` as an unevaluated sympy expression (``^`` is right-associative),
    or None. A recursive-descent grammar over numbers, + - * / ^ and parentheses only: nothing is
    evaluated, and the guard bounds the result before sympy compares it."""
    import sympy

    tokens = [m.group(1) or m.group(2) for m in _PLAIN_TOKEN_RE.finditer(expr.replace("\n", " ")) if m.group(0).strip()]
    tokens = [{"×": "*", "÷": "/", "\\times": "*", "\\div": "/"}.get(t, t) for t in tokens]
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def atom(depth: int):
        tok = take() if peek() is not None else None
        if tok == "(":
            value = add(depth + 1)
            if take() != ")":
                raise ValueError("unbalanced")
            return value
        if tok == "-":
            return sympy.Mul(-1, power(depth + 1), evaluate=False)
        if tok is None or not (tok[0].isdigit() or tok[0] == "."):
            raise ValueError(f"unexpected {tok!r}")
        return sympy.Number(tok)

    def power(depth: int):
        if depth > 50:
            raise ValueError("too deep")
        base = atom(depth)
        if peek() == "^":
            take()
            return sympy.Pow(base, power(depth + 1), evaluate=False)
        return base

    def mul(depth: int):
        value = power(depth)
        while peek() in ("*", "/"):
            op, rhs = take(), power(depth)
            value = sympy.Mul(value, rhs if op == "*" else sympy.Pow(rhs, -1, evaluate=False), evaluate=False)
        return value

    def add(depth: int):
        value = mul(depth)
        while peek() in ("+", "-"):
            op, rhs = take(), mul(depth)
            value = sympy.Add(value, rhs if op == "+" else sympy.Mul(-1, rhs, evaluate=False), evaluate=False)
        return value

    try:
        value = add(0)
        return value if pos == len(tokens) else None
    except (ValueError, IndexError, TypeError):
        return None


# ---------------------------------------------------------------- the verifier

def _norm_text(s: str) -> str:
    return re.sub(r"\\(?:text|mathrm|textbf)\{([^{}]*)\}", r"\1", s).replace(" ", "").lower()


@register_verifier("math")
def verify_math(response: str, reference: str) -> VerifyResult:
    """1.0 if the final answer of ``response`` is equivalent to ``reference`` (LaTeX or plain), 0.0 if not,
    if there is none, or if the guard refused it (``guard_rejected``); None if the reference cannot
    be read or is itself refused by the guard."""
    return grade_math(response, reference, guard=True)


def verify_math_unguarded(response: str, reference: str) -> VerifyResult:
    """``verify_math`` with the guard's checks skipped: only the baseline of
    benchmarks/bench_grading_hostile.py uses it (by path), to measure what the guard saves."""
    return grade_math(response, reference, guard=False)


def _refusal(parsed: Parsed, guard: bool) -> Optional[str]:
    if not guard:
        return None
    return parsed.refused or next(filter(None, map(check_expr, parsed.values)), None)


def grade_math(response: str, reference: str, guard: bool) -> VerifyResult:
    """The verdict of ``verify_math``; with ``guard=False`` nothing is refused (the benchmark baseline)."""
    gold = read_reference(reference, guard)
    refused = _refusal(gold, guard)
    if refused:
        return VerifyResult(None, gold.text[:80], f"reference refused: {refused}", guard_rejected=True)
    pred = read_response(response, guard)
    refused = _refusal(pred, guard)
    if refused:
        return VerifyResult(0.0, pred.text[:80], f"{pred.source}: refused: {refused}", guard_rejected=True)
    if not pred.text and not pred.values:
        return VerifyResult(0.0, None, pred.source)
    if not gold.values or not pred.values:
        if pred.text and _norm_text(pred.text) == _norm_text(gold.text or reference):
            return VerifyResult(1.0, pred.text, f"{pred.source}: same text")
        if not gold.values:
            return VerifyResult(None, pred.text, "reference not parsable")
        return VerifyResult(0.0, pred.text, f"{pred.source}: answer not parsable")
    mv = _mv()[0]
    ok = mv.verify(list(gold.values), list(pred.values), timeout_seconds=None)
    return VerifyResult(1.0 if ok else 0.0, pred.text, f"{pred.source}: {'equivalent' if ok else 'not equivalent'}")
