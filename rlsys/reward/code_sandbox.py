"""The optional ``code`` verifier: run a Python answer followed by the reference's test code in a
throw-away sandbox; score 1 iff the program exits 0. Off by default because it executes model
output: importing this module (``reward.verifier_paths=["rlsys.reward.code_sandbox:verify_code"]``)
registers it. Must not import ray, vllm or deepspeed (torch comes in only through rlsys.types).

Isolation is a guard against accidents, not a security boundary: a fresh ``python -I`` in a temp
dir with a scrubbed environment, CPU / address-space / file-size rlimits, a wall-clock limit, its
own session (killed as a group), and no network when ``unshare`` can make a network namespace here.
For untrusted models also run the service as an unprivileged user inside a container.
"""
from __future__ import annotations

import ctypes
import functools
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile

from rlsys.reward.verifiers import register_verifier
from rlsys.types import VerifyResult

WALL_LIMIT_S = 3.0  # keep below reward.timeout_s, or the service kills the grading worker first
CPU_LIMIT_S = 3  # RLIMIT_CPU: a busy loop gets SIGKILL even if the wall clock is generous
MEMORY_LIMIT_BYTES = 1 << 30  # RLIMIT_AS of the sandboxed interpreter
FILE_LIMIT_BYTES = 16 << 20  # RLIMIT_FSIZE: bounds files written, stdout/stderr included
_FENCE_RE = re.compile(r"```(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


@functools.lru_cache(maxsize=1)
def network_isolation_prefix() -> tuple[str, ...]:
    """``("unshare", "-rn")`` (or ``-n`` as root) if a new network namespace works here, else ``()``
    (then the sandbox still runs, with network: the caller is told via the result's reason)."""
    unshare = shutil.which("unshare")
    for flags in (("-rn",), ("-n",)) if unshare else ():
        try:
            probe = subprocess.run([unshare, *flags, "true"], capture_output=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return (unshare, *flags)
    return ()


def _limit_child() -> None:
    """preexec_fn of the sandboxed process. Safe here: grading workers are single-threaded."""
    for limit, value in ((resource.RLIMIT_CPU, CPU_LIMIT_S), (resource.RLIMIT_AS, MEMORY_LIMIT_BYTES),
                         (resource.RLIMIT_FSIZE, FILE_LIMIT_BYTES), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with a killed grading worker
    except (OSError, AttributeError):
        pass


def run_python(source: str, wall_limit_s: float = WALL_LIMIT_S) -> tuple[int | None, str]:
    """Run ``source`` as a script in a fresh temp dir. Returns (exit code, or None past the wall
    limit; the last 500 chars of stderr)."""
    with tempfile.TemporaryDirectory(prefix="rlsys-code-") as tmp:
        with open(os.path.join(tmp, "main.py"), "w", encoding="utf-8") as f:
            f.write(source)
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8"}
        with open(os.path.join(tmp, "out.txt"), "wb") as out, open(os.path.join(tmp, "err.txt"), "wb") as err:
            proc = subprocess.Popen([*network_isolation_prefix(), sys.executable, "-I", "main.py"], cwd=tmp,
                                    env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    preexec_fn=_limit_child, start_new_session=True)
            try:
                code: int | None = proc.wait(timeout=wall_limit_s)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                _kill_group(proc)
        with open(os.path.join(tmp, "err.txt"), "rb") as err:
            err.seek(max(0, os.path.getsize(err.name) - 500))
            return code, err.read().decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the answer's own children too
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def extract_code(response: str) -> str:
    """The last fenced code block (```python ... ```), else the whole response."""
    blocks = _FENCE_RE.findall(response)
    return blocks[-1] if blocks else response


@register_verifier("code")
def verify_code(response: str, reference: str) -> VerifyResult:
    """``reference`` is Python test code (asserts) run after the answer's code; 1.0 iff exit code 0."""
    code = extract_code(response)
    if not code.strip():
        return VerifyResult(0.0, None, "no code found")
    exit_code, stderr = run_python(code + "\n\n" + reference + "\n")
    net = "" if network_isolation_prefix() else " (sandbox had network: unshare unavailable)"
    parsed = code[:80]
    if exit_code is None:
        return VerifyResult(0.0, parsed, f"wall time limit {WALL_LIMIT_S:g}s exceeded{net}")
    if exit_code != 0:
        last = stderr.strip().splitlines()[-1:] or [f"exit code {exit_code}"]
        return VerifyResult(0.0, parsed, f"tests failed: {last[0][:200]}{net}")
    return VerifyResult(1.0, parsed, f"tests passed{net}")
