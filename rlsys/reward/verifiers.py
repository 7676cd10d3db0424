"""Verifier registry: one contract, ``verify(response, reference) -> VerifyResult``, looked up by name.

A verifier is a pure function of two strings. It never raises on model output (``safe_verify``
turns any exception into ``score=None``), never evaluates model output, and does no concurrency or
time limiting of its own: the grading service owns both. Must not import ray, vllm or deepspeed
(torch comes in only through rlsys.types).
"""
from __future__ import annotations

import importlib
from typing import Callable

from rlsys.types import VerifyResult

Verifier = Callable[[str, str], VerifyResult]

_REGISTRY: dict[str, Verifier] = {}
# Imported on the first lookup; each registers its verifiers with @register_verifier. The `code`
# verifier (rlsys.reward.code_sandbox) is deliberately not here: it runs model code, so it is off
# until a config lists it in reward.verifier_paths.
_BUILTIN_MODULES = ("rlsys.reward.math_verifier", "rlsys.reward.simple_verifiers")
_CODE_PATH = "rlsys.reward.code_sandbox:verify_code"
_builtins_loaded = False


def register_verifier(name: str) -> Callable[[Verifier], Verifier]:
    """Decorator: make ``fn`` available as ``get_verifier(name)``. Re-registering a name replaces it."""
    def decorate(fn: Verifier) -> Verifier:
        _REGISTRY[name] = fn
        return fn

    return decorate


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _builtins_loaded = True


def load_path(path: str) -> Verifier:
    """Import ``"pkg.mod:function"`` (which also runs the module's @register_verifier decorators)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"verifier path must look like 'pkg.mod:function', got {path!r}")
    fn = getattr(importlib.import_module(module_name), attr)
    if not callable(fn):
        raise TypeError(f"verifier path {path!r} does not name a callable")
    _REGISTRY[path] = fn
    return fn


def get_verifier(name: str) -> Verifier:
    """The verifier registered as ``name``, or the function at dotted path ``"pkg.mod:function"``.

    Raises KeyError for an unknown name (a configuration error, not a model-output error).
    """
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        return load_path(name)
    hint = ""
    if name == "code":
        hint = f"; it is off by default, enable it with reward.verifier_paths=['{_CODE_PATH}']"
    raise KeyError(f"unknown verifier {name!r} (registered: {registered_names()}){hint}")


def registered_names() -> list[str]:
    """Names usable with ``get_verifier`` without a dotted path (built-ins plus whatever was loaded)."""
    _load_builtins()
    return sorted(n for n in _REGISTRY if ":" not in n)


def safe_verify(fn: Verifier, response: str, reference: str) -> VerifyResult:
    """Call ``fn`` and enforce the contract: any exception, or a score outside [0, 1], becomes
    ``VerifyResult(None, None, reason)``. ``MemoryError`` and ``RecursionError`` are caught too: a
    deeply nested or huge answer must not take the grading worker down."""
    try:
        result = fn(response, reference)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raise"; includes Recursion/MemoryError
        return VerifyResult(None, None, f"verifier error: {type(exc).__name__}: {str(exc)[:200]}")
    if not isinstance(result, VerifyResult):
        return VerifyResult(None, None, f"verifier returned {type(result).__name__}, not VerifyResult")
    if result.score is not None and not 0.0 <= result.score <= 1.0:
        return VerifyResult(None, result.parsed, f"score {result.score!r} outside [0, 1]")
    return result
