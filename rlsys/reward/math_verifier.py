"""The ``math`` verifier: extract the final answer of a worked solution, compare it with math-verify.

Extraction is ours (last complete ``\\boxed{}``, else the text after the last "answer is"/"Answer:",
else the last math span or number near the end); equivalence is math-verify's ``parse``/``verify``
with its signal-based timeouts switched off (they fail off the main thread): the grading service
enforces the time limit by killing the worker. Must not import ray, vllm or deepspeed (torch comes
in only through rlsys.types).
"""
from __future__ import annotations

import functools
import logging
import re
import unicodedata

from rlsys.reward.verifiers import register_verifier
from rlsys.types import VerifyResult

TAIL_CHARS = 4000  # the final answer sits at the end; regexes only see this tail, which bounds their cost
MAX_ANSWER_CHARS = 400  # a longer "final answer" is not one; refusing it bounds the work sympy is given
# Parsing cost grows steeply with nesting (measured: 10 nested parentheses ~1.4 s, 20 ~4 s; 13 nested
# \frac ~0.8 s, 30 never finishes), and real final answers rarely nest past 4.
MAX_NESTING = 10
MAX_SCAN_CHARS = 5000  # brace matching gives up past this (an unterminated \boxed{ in a megabyte reply)
MAX_BOXED_TRIES = 20  # how many \boxed occurrences, from the last, may be unterminated before giving up

_ANSWER_PHRASE_RE = re.compile(r"answer\**\s*(?:is|:|=)[ \t:*]*", re.IGNORECASE)
_MATH_SPAN_RE = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_NUMBER = r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?%?"
_ATOM_RE = re.compile(_MATH_SPAN_RE.pattern + "|(" + _NUMBER + ")", re.DOTALL)
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")
_TRAILING_WORDS_RE = re.compile(r"(?<=[\d}])\s+[A-Za-z][A-Za-z ]*$")  # "12 apples" -> "12"
_LOOKALIKES = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": "\\times ", "\u00f7": "/"})


def _braced_after(text: str, i: int) -> str | None:
    """Content of the ``{...}`` group starting at ``text[i]`` (after spaces), braces balanced;
    escaped ``\\{``/``\\}`` do not count. None if there is no group or it does not close in time."""
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
                return text[i + 1:j]
        j += 1
    return None


def find_boxed(text: str) -> str | None:
    """Content of the last *complete* ``\\boxed{...}`` or ``\\fbox{...}`` in ``text``, else None."""
    pos = len(text)
    for _ in range(MAX_BOXED_TRIES):
        start, tok_len = max((text.rfind("\\boxed", 0, pos), 6), (text.rfind("\\fbox", 0, pos), 5))
        if start < 0:
            return None
        content = _braced_after(text, start + tok_len)
        if content is not None:
            return content
        pos = start
    return None


def find_answer_phrase(text: str) -> str | None:
    """What follows the last "answer is" / "Answer:" / "final answer:" on its line, cut at the end
    of the sentence; the first math span in it if it has one."""
    tail, match = text[-TAIL_CHARS:], None
    for match in _ANSWER_PHRASE_RE.finditer(tail):
        pass
    rest = "" if match is None else tail[match.end():].split("\n", 1)[0]
    if not rest.strip():
        return None
    span = _MATH_SPAN_RE.search(rest)
    if span:
        return next(g for g in span.groups() if g is not None)
    return _SENTENCE_END_RE.split(rest, maxsplit=1)[0]


def find_last_atom(text: str) -> str | None:
    """The last LaTeX math span (``$..$``, ``$$..$$``, ``\\(..\\)``, ``\\[..\\]``) or bare number."""
    match = None
    for match in _ATOM_RE.finditer(text[-TAIL_CHARS:]):
        pass
    return None if match is None else next(g for g in match.groups() if g is not None)


def clean_answer(answer: str) -> str:
    """Normalise an extracted answer for parsing: unicode look-alikes, markdown bold, delimiters,
    trailing punctuation and unit words, python ``**`` powers, unescaped ``%`` and ``$``."""
    s, previous = unicodedata.normalize("NFKC", answer).translate(_LOOKALIKES), None
    while s != previous:  # "**$42$**." -> "42", whatever the nesting order
        previous = s
        s = s.strip().strip("*$").rstrip(".,;:!?")
        if s.startswith(("\\(", "\\[")) and s.endswith(("\\)", "\\]")):
            s = s[2:-2]
    s = s.replace("**", "^")
    s = re.sub(r"(?<!\\)%", r"\\%", s)
    s = re.sub(r"(?<!\\)\$", " ", s)
    return _TRAILING_WORDS_RE.sub("", s).strip()


def extract_final_answer(response: str) -> tuple[str | None, str]:
    """(cleaned final answer or None, where it came from)."""
    for source, finder in (("boxed", find_boxed), ("answer phrase", find_answer_phrase),
                           ("last expression", find_last_atom)):
        found = finder(response)
        if found is not None and found.strip():
            return clean_answer(found), source
    return None, "no final answer found"


@functools.lru_cache(maxsize=1)
def _math_verify():
    """Imported lazily so that registering the verifiers stays cheap; its 'timeout disabled' warning is
    silenced because the grading service enforces the time limit instead. Only the LaTeX extractor
    is used: it is a grammar, whereas ExprExtractionConfig hands text to sympy's eval-based parse_expr."""
    import math_verify

    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.ERROR)
    config = [math_verify.LatexExtractionConfig(boxed_match_priority=0)]
    return math_verify, config


def parse_latex(latex: str) -> list:
    """math-verify's parse of one answer, wrapped in ``$..$`` (a bare ``2\\sqrt{2}`` parses as 2)."""
    mv, config = _math_verify()
    return mv.parse(f"${latex}$", extraction_config=config, parsing_timeout=None)


@functools.lru_cache(maxsize=8192)
def _parse_reference(reference: str) -> tuple:
    mv, config = _math_verify()
    if "$" in reference or "\\boxed" in reference:
        return tuple(mv.parse(reference, extraction_config=config, parsing_timeout=None))
    return tuple(parse_latex(clean_answer(reference)))


def nesting_depth(s: str) -> int:
    """Deepest nesting of (), [] and {} (unbalanced closers are ignored)."""
    depth = deepest = 0
    for c in s:
        if c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")]}" and depth:
            depth -= 1
    return deepest


def _norm_text(s: str) -> str:
    return re.sub(r"\\text\{([^{}]*)\}", r"\1", s).replace(" ", "").lower()


@register_verifier("math")
def verify_math(response: str, reference: str) -> VerifyResult:
    """1.0 if the final answer of ``response`` is mathematically equivalent to ``reference`` (a LaTeX
    or plain answer), 0.0 if not or if there is no final answer; None if the reference cannot be read."""
    answer, source = extract_final_answer(response)
    if answer is None or not answer:
        return VerifyResult(0.0, None, source)
    if len(answer) > MAX_ANSWER_CHARS:
        return VerifyResult(0.0, answer[:80], f"{source}: answer longer than {MAX_ANSWER_CHARS} chars")
    if nesting_depth(answer) > MAX_NESTING:
        return VerifyResult(0.0, answer[:80], f"{source}: answer nested deeper than {MAX_NESTING}")
    gold = list(_parse_reference(reference))
    pred = parse_latex(answer)
    if not gold or not pred:
        if _norm_text(answer) == _norm_text(reference):
            return VerifyResult(1.0, answer, f"{source}: same text")
        if not gold:
            return VerifyResult(None, answer, "reference not parsable")
        return VerifyResult(0.0, answer, f"{source}: answer not parsable")
    mv, _ = _math_verify()
    ok = mv.verify(gold, pred, timeout_seconds=None)
    return VerifyResult(1.0 if ok else 0.0, answer, f"{source}: {'equivalent' if ok else 'not equivalent'}")
