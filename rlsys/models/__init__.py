"""Built-in models (the character-level tiny arithmetic model, SmolLM2-135M-Instruct) and their cache.

``cached_build`` is the one way a built-in model lands in the cache: built in a temporary
directory and renamed into place under a file lock. Stdlib only here (the builders import torch
and transformers lazily); must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

MARKER = "rlsys_build.json"  # written last by a builder: its presence marks a complete directory


def cached_build(final_dir: str, expected: dict, build: Callable[[str], dict]) -> str:
    """Return ``final_dir``, first running ``build(tmp_dir) -> marker`` unless it is complete.

    Complete means ``final_dir/MARKER`` exists and holds every key of ``expected`` with the same
    value (e.g. a recipe hash). ``build`` writes into a fresh sibling temporary directory and
    returns the marker dict, which is written there before the directory is renamed into place,
    so concurrent callers see a complete model or none and a crashed build leaves no half model.
    """
    final = Path(final_dir)
    if is_complete(final, expected):
        return str(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(final.parent / f".{final.name}.lock"):
        if is_complete(final, expected):  # another process built it while we waited
            return str(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            marker = {**build(str(tmp)), **expected}
            (tmp / MARKER).write_text(json.dumps(marker, indent=1))
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(final)


def is_complete(path: Path, expected: dict) -> bool:
    try:
        marker = json.loads((Path(path) / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return all(marker.get(k) == v for k, v in expected.items()) and (Path(path) / "config.json").is_file()


@contextlib.contextmanager
def _file_lock(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
