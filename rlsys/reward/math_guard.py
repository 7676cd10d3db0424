"""Static cost checks that refuse a math answer before sympy is asked to compare it.

``check_text`` looks at an answer's text before latex2sympy parses it (length and nesting, which
its parse time grows with; superscript towers, integrals and limits, which the tree check would
refuse anyway but whose parse alone can take a second); ``check_expr`` walks the parsed, *unevaluated* sympy tree and bounds what comparing it
would cost (node count, power towers, digits of every number, factorial arguments, summation
ranges, integrals and limits). Each returns None or the reason for refusing. Neither evaluates
anything: sizes are upper bounds on ``log10`` of magnitudes, computed from the tree. The grading
service's per-answer timeout stays the last line of defence. Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import math
import re
from typing import Optional

import sympy

# latex2sympy parses ~1-2 ms per character on a busy core; real final answers are far shorter.
MAX_ANSWER_CHARS = 300
# Parse time also grows steeply with nesting (measured: 10 nested parentheses ~1.4 s, 13 nested
# \frac ~0.8 s, 30 never finishes); real final answers rarely nest past 4.
MAX_NESTING = 10
# Parentheses cost most: ANTLR's prediction, cold, takes ~0.6 s at depth 4, ~1.8 s at 7, 6 s at 9.
MAX_PAREN_NESTING = 6
MAX_NODES = 300  # sympy tree size; a 100-element tuple of short numbers is ~ 200
MAX_TOWER = 3  # exponents stacked in exponents: 2^{3^{4}} is an answer, 2^{2^{2^{2^{2}}}} is a trap
MAX_DIGITS = 100_000  # log10 of any number in the answer: 2^{10^5} compares in milliseconds, 2^{2^{30}} in 7.5 s
MAX_FACTORIAL = 10_000  # n! and binomial(n, k) for n up to here cost milliseconds
# (x+1)^{200} against x^2 takes 1.2 s expanding; a power of a compound symbolic base stays at this
MAX_SYMBOLIC_EXPONENT = 50
MAX_SUM_TERMS = 10_000  # a finite sum or product is summed term by term in the worst case
SYMBOL_SIZE = 1.0  # a free symbol is taken to be ~10 in magnitude, as sympy's numeric checks do

_FACTORIAL_LIKE = (sympy.factorial, sympy.factorial2, sympy.subfactorial, sympy.gamma, sympy.binomial)
# An unevaluated integral or limit is never a final answer, and sympy's cost on one has no bound
# (a two-node body such as sin(sin(x)) can run for minutes): refused outright, whatever its size.
_UNBOUNDED = (sympy.Integral, sympy.Limit)
_POWER_CHAIN_RE = re.compile(r"(?:\^\s*[\w.]+\s*){%d,}" % (MAX_TOWER + 1))  # 2^2^2^2 (no braces)
_CALCULUS_RE = re.compile(r"\\(?:[io]+nt|lim)(?![a-zA-Z])")  # \int, \iint, \oint, \lim


class _Refused(Exception):
    pass


def check_text(answer: str) -> Optional[str]:
    """Why ``answer`` (an extracted final answer, as text) may not be parsed; None if it may."""
    if len(answer) > MAX_ANSWER_CHARS:
        return f"answer longer than {MAX_ANSWER_CHARS} chars"
    if nesting_depth(answer) > MAX_NESTING:
        return f"answer nested deeper than {MAX_NESTING}"
    if nesting_depth(answer, "(", ")") > MAX_PAREN_NESTING:
        return f"parentheses nested deeper than {MAX_PAREN_NESTING}"
    # latex2sympy's parser itself takes ~1 s on x^{x^{x^{x^{x}}}} or a long integrand, before any
    # tree exists to check: what the tree check would refuse anyway is refused from the text
    if superscript_depth(answer) > MAX_TOWER or _POWER_CHAIN_RE.search(answer):
        return f"power tower higher than {MAX_TOWER}"
    if _CALCULUS_RE.search(answer):
        return "unevaluated integral or limit (sympy's cost on it is unbounded)"
    return None


def superscript_depth(s: str) -> int:
    """How many braced superscripts are open at once at the deepest point: x^{x^{x}} is 2."""
    stack: list[bool] = []  # one entry per open brace: does it open a superscript?
    depth = deepest = 0
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "^":
            j = i + 1
            while j < n and s[j] == " ":
                j += 1
            if j < n and s[j] == "{":
                stack.append(True)
                depth += 1
                deepest = max(deepest, depth)
                i = j + 1
                continue
            deepest = max(deepest, depth + 1)
        elif c == "{":
            stack.append(False)
        elif c == "}" and stack and stack.pop():
            depth -= 1
        i += 1
    return deepest


def nesting_depth(s: str, openers: str = "([{", closers: str = ")]}") -> int:
    """Deepest nesting of (), [] and {} (unbalanced closers are ignored)."""
    depth = deepest = 0
    for c in s:
        if c in openers:
            depth += 1
            deepest = max(deepest, depth)
        elif c in closers and depth:
            depth -= 1
    return deepest


def check_expr(expr) -> Optional[str]:
    """Why the parsed answer ``expr`` (sympy object, matrix, or str) may not go to sympy; None if it may."""
    if isinstance(expr, str):
        return None
    try:
        _count_nodes(expr)
        if _tower(expr) > MAX_TOWER:
            raise _Refused(f"power tower higher than {MAX_TOWER}")
        _size(expr)
    except _Refused as refused:
        return str(refused)
    except (RecursionError, OverflowError, ValueError, TypeError, AttributeError) as exc:
        return f"answer not checkable ({type(exc).__name__})"
    return None


def _args(e) -> tuple:
    if getattr(e, "is_Matrix", False):
        return tuple(e)
    return e.args if isinstance(e, sympy.Basic) else ()


def _count_nodes(expr) -> None:
    stack, seen = [expr], 0
    while stack:
        seen += 1
        if seen > MAX_NODES:
            raise _Refused(f"answer has more than {MAX_NODES} sympy nodes")
        stack.extend(_args(stack.pop()))


def _tower(e) -> int:
    """How many exponents are stacked inside exponents in ``e``: (2^2)^2 is 1, 2^{2^2} is 2."""
    if isinstance(e, sympy.Pow):
        return max(_tower(e.base), 1 + _tower(e.exp))
    if isinstance(e, sympy.exp):  # e^{x} parses as exp(x), not as a Pow
        return 1 + _tower(e.args[0])
    return max((_tower(a) for a in _args(e)), default=0)


def _number_size(e) -> float:
    """|log10| of a finite sympy number (an upper bound for Floats, exact to rounding for Rationals)."""
    if e.is_Rational:
        return max(math.log10(abs(e.p)), math.log10(e.q)) if e.p else 0.0
    _, man, exp, bc = e._mpf_  # a Float: mantissa * 2^exp with bc mantissa bits
    return abs(exp + bc) * math.log10(2) if man else 0.0


def _size(e) -> float:
    """Upper bound on |log10| of the magnitude of ``e`` and of every subterm; raises _Refused."""
    if isinstance(e, sympy.Number) and e.is_finite:
        size = _number_size(e)
    elif isinstance(e, sympy.Pow):
        size = _power_size(e)
    elif isinstance(e, sympy.exp):
        exp = _size(e.args[0])
        if exp > 300:
            raise _Refused("exponent with more than 300 digits")
        size = 10 ** exp * math.log10(math.e)
    elif isinstance(e, _FACTORIAL_LIKE):
        size = _factorial_size(e)
    elif isinstance(e, (sympy.Sum, sympy.Product)):
        size = _sum_size(e)
    elif isinstance(e, _UNBOUNDED):
        raise _Refused("unevaluated integral or limit (sympy's cost on it is unbounded)")
    elif getattr(e, "is_Symbol", False) or isinstance(e, sympy.NumberSymbol):
        size = SYMBOL_SIZE
    else:  # sums, products, functions, relations, sets, tuples, matrices: log|ab| = log|a| + log|b|
        size = sum(_size(a) for a in _args(e))
    if size > MAX_DIGITS:
        raise _Refused(f"a number in the answer has more than {MAX_DIGITS} digits")
    return size


def _power_size(e: sympy.Pow) -> float:
    base, exp = _size(e.base), _size(e.exp)
    if exp > 300:
        raise _Refused("exponent with more than 300 digits")
    magnitude = 10 ** exp  # |exponent| <= this
    compound = e.base.free_symbols and not e.base.is_Symbol
    if compound and e.exp.is_number and magnitude > MAX_SYMBOLIC_EXPONENT:
        raise _Refused(f"power of a symbolic expression with exponent above {MAX_SYMBOLIC_EXPONENT}")
    return magnitude * max(base, math.log10(2))  # 1.5^{10^9} is huge though log10(1.5) is small


def _factorial_size(e) -> float:
    arg = e.args[0]
    n = abs(int(arg)) if arg.is_Integer else 10 ** min(_size(arg), 300)
    if n > MAX_FACTORIAL:
        raise _Refused(f"factorial or binomial of a number above {MAX_FACTORIAL}")
    for other in e.args[1:]:
        _size(other)
    return n * math.log10(max(n, 2))


def _sum_size(e) -> float:
    body, *limits = e.args
    terms = 1.0
    for limit in limits:
        if len(limit) != 3:
            raise _Refused("sum or product without bounds")
        _, low, high = limit
        if not (low.is_number and high.is_number) or not (low.is_finite and high.is_finite):
            raise _Refused("sum or product with an unbounded or symbolic range (sympy's cost is unbounded)")
        terms *= 10 ** min(max(_size(low), _size(high)), 300)
        if terms > MAX_SUM_TERMS:
            raise _Refused(f"sum or product of more than {MAX_SUM_TERMS} terms")
    body_size = _size(body)
    return body_size * terms if isinstance(e, sympy.Product) else body_size + math.log10(terms + 1)
