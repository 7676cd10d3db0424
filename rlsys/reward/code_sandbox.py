"""The optional ``code`` verifier: run a Python answer, then the reference's test code, in a sandbox;
score 1 iff the sandbox's harness reports, with this run's nonce, that every test ran and passed.
Off by default because it executes model output: importing this module
(``reward.verifier_paths=["rlsys.reward.code_sandbox:verify_code"]``) registers it, and every grading
worker then proves at start-up that the sandbox works here (``startup_check``) or the service fails.
Model code never runs in the grading process: only in the child built below. docs/sandbox.md says
what is blocked and by what. Must not import ray, vllm or deepspeed; the sandbox side is stdlib only.

The child: ``setpriv --pdeathsig KILL unshare --mount --uts --ipc --net --pid --fork --kill-child
python -I -S -c <the _sandbox_* functions>``. As root inside the new namespaces it makes every mount
read-only, mounts a minimal /dev, a fresh /proc and a size-capped tmpfs scratch /tmp, sets the
rlimits, drops to an unprivileged uid of its own, installs a seccomp filter (no sockets, no new
namespaces, no ptrace), and only then reads and runs the answer, as pid 1 of its pid namespace: when it
exits, the kernel kills everything the answer started.
"""
from __future__ import annotations

import builtins
import ctypes
import fcntl
import functools
import inspect
import json
import os
import platform
import re
import resource
import secrets
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from typing import Optional

from rlsys.reward.verifiers import register_verifier
from rlsys.types import VerifyResult

WALL_LIMIT_S = 3.0  # answer + tests, once the sandbox is built; keep below reward.timeout_s
SETUP_TIMEOUT_S = 10.0  # building the sandbox (~0.1 s when idle); past it the answer is ungradable
CPU_LIMIT_S = 3  # RLIMIT_CPU per process: a busy loop is SIGKILLed even if the wall clock is generous
MEMORY_LIMIT_BYTES = 1 << 30  # RLIMIT_AS per process of the sandbox
FILE_LIMIT_BYTES = 16 << 20  # RLIMIT_FSIZE: the largest file the answer can write
SCRATCH_BYTES = 64 << 20  # size of the tmpfs at /tmp, the only writable place
MAX_PROCESSES = 16  # RLIMIT_NPROC of the sandbox uid (threads count): a fork bomb stops there
MAX_OPEN_FILES = 64  # RLIMIT_NOFILE
PIPE_BYTES = 1 << 20  # answer + tests go through one pipe of this size, written before the child starts
# Each grading worker's sandboxes run as their own uid (and gid), none of which owns a file outside the
# scratch tmpfs: RLIMIT_NPROC counts per uid, so a fork bomb in one worker's sandbox cannot starve another.
SANDBOX_UID_BASE = 1_900_000_000
SANDBOX_UID_SLOTS = 1_000_000
EXIT_THREADS = 98  # the harness's exit code when the answer left threads running
_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
_FENCE_RE = re.compile(r"```(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_BUILTIN_EXCEPTIONS = frozenset(n for n, v in vars(builtins).items()
                                if isinstance(v, type) and issubclass(v, BaseException))
# Denied with EPERM: sockets of every family (and io_uring, which can open them), new namespaces (a user
# namespace would hand the answer capabilities inside it), mounting, ptrace and cross-process memory
# access, keyrings, bpf, perf and userfaultfd. clone3 gets ENOSYS (its flags sit in memory the filter
# cannot read; libc falls back to clone, whose flags are checked). Numbers from the kernel's unistd.h.
_DENIED = ("socket", "socketpair", "io_uring_setup", "io_uring_enter", "io_uring_register", "unshare", "setns",
           "mount", "umount2", "pivot_root", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
           "mount_setattr", "ptrace", "process_vm_readv", "process_vm_writev", "bpf", "perf_event_open",
           "userfaultfd", "keyctl", "add_key", "request_key")
_COMMON_NR = {"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
              "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435,
              "mount_setattr": 442}
_SYSCALLS = {  # machine: (AUDIT_ARCH_*, x32 ABI to refuse, syscall numbers)
    "x86_64": (0xC000003E, True, {"socket": 41, "socketpair": 53, "clone": 56, "unshare": 272, "setns": 308,
                                  "mount": 165, "umount2": 166, "pivot_root": 155, "ptrace": 101,
                                  "process_vm_readv": 310, "process_vm_writev": 311, "bpf": 321,
                                  "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250, "add_key": 248,
                                  "request_key": 249, **_COMMON_NR}),
    "aarch64": (0xC00000B7, False, {"socket": 198, "socketpair": 199, "clone": 220, "unshare": 97, "setns": 268,
                                    "mount": 40, "umount2": 39, "pivot_root": 41, "ptrace": 117,
                                    "process_vm_readv": 270, "process_vm_writev": 271, "bpf": 280,
                                    "perf_event_open": 241, "userfaultfd": 282, "keyctl": 219, "add_key": 217,
                                    "request_key": 218, **_COMMON_NR}),
}
_CLONE_NEW_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be built on this machine (the code verifier then refuses to run anything)."""


@dataclass(frozen=True)
class RunOutcome:
    verdict: Optional[str]  # what the harness wrote after this run's nonce ("pass", "fail tests NameError", ...)
    exit_code: Optional[int]  # None: killed at the wall limit; negative: killed by that signal
    setup_error: Optional[str] = None  # the sandbox could not be built (written before any answer code ran)
    wall_limit_s: float = WALL_LIMIT_S


# ---------------------------------------------------------------- grader side

def sandbox_uid() -> int:
    """The uid (and gid) this process's sandboxes run as."""
    return SANDBOX_UID_BASE + os.getpid() % SANDBOX_UID_SLOTS


def run_sandboxed(code: str, tests: str, wall_limit_s: float = WALL_LIMIT_S) -> RunOutcome:
    """Run ``code``, then ``tests`` in the same module namespace, in a fresh sandbox. The tests wait in
    the input pipe until the answer's top-level code has returned, the nonce until the tests have."""
    nonce = secrets.token_hex(16).encode()
    answer = code.encode("utf-8", "replace")
    test_code = tests.encode("utf-8", "replace")
    payload = b"%015d\n" % len(answer) + answer + b"%015d\n" % len(test_code) + test_code + nonce
    out_r, out_w = os.pipe()
    try:
        proc = _start(payload, out_w)
        # The wall clock starts once the sandbox is built ("setup-ok"): a loaded machine's slow start is
        # not the answer's time. A setup that fails exits by itself.
        built = select.select([out_r], [], [], SETUP_TIMEOUT_S)[0]
        out = _read_available(out_r) if built else b""
        try:
            exit_code: Optional[int] = proc.wait(timeout=wall_limit_s if out.startswith(b"setup-ok") else 1.0)
        except subprocess.TimeoutExpired:
            exit_code = None
            out += _read_available(out_r)
            _kill_sandbox(proc, out)
        return _parse(out + _read_available(out_r), nonce, exit_code, wall_limit_s)
    finally:
        os.close(out_r)


def _start(payload: bytes, out_w: int) -> subprocess.Popen:
    """Fill the input pipe, start the sandbox on it; closes our copies of both child ends."""
    in_r, in_w = os.pipe()
    try:
        if fcntl.fcntl(in_w, fcntl.F_SETPIPE_SZ, PIPE_BYTES) < len(payload):
            raise ValueError(f"answer and tests are {len(payload)} bytes, over the {PIPE_BYTES}-byte pipe")
        os.set_blocking(in_w, False)
        os.write(in_w, payload)  # fits the pipe: never blocks, nothing is lost
        os.close(in_w)
        in_w = -1
        return subprocess.Popen(_command(in_r, out_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, pass_fds=(in_r, out_w), cwd="/", env=_ENV,
                                start_new_session=True)
    finally:
        for fd in (in_r, in_w, out_w):
            if fd >= 0:
                os.close(fd)


def _command(in_fd: int, out_fd: int) -> list[str]:
    setpriv, unshare = _tools()
    uid = sandbox_uid()
    machine = platform.machine()
    arch, x32, numbers = _SYSCALLS[machine]
    spec = {"in_fd": in_fd, "out_fd": out_fd, "uid": uid, "gid": uid, "scratch_bytes": SCRATCH_BYTES,
            "expose": _hidden_interpreter_dirs(), "exit_threads": EXIT_THREADS,
            "rlimits": [[resource.RLIMIT_CPU, CPU_LIMIT_S], [resource.RLIMIT_AS, MEMORY_LIMIT_BYTES],
                        [resource.RLIMIT_FSIZE, FILE_LIMIT_BYTES], [resource.RLIMIT_CORE, 0],
                        [resource.RLIMIT_NPROC, MAX_PROCESSES], [resource.RLIMIT_NOFILE, MAX_OPEN_FILES]],
            "seccomp": {"arch": arch, "x32": x32, "deny": [numbers[n] for n in _DENIED],
                        "enosys": [numbers["clone3"]], "clone": numbers["clone"], "clone_flags": _CLONE_NEW_FLAGS}}
    return [setpriv, "--pdeathsig", "KILL", unshare, "--mount", "--uts", "--ipc", "--net", "--pid", "--fork",
            "--kill-child", "--", os.path.realpath(sys.executable), "-I", "-S", "-c", _sandbox_source(),
            json.dumps(spec)]


@functools.lru_cache(maxsize=1)
def _tools() -> tuple[str, str]:
    if platform.machine() not in _SYSCALLS:
        raise SandboxUnavailable(f"no seccomp syscall table for {platform.machine()!r} (have {sorted(_SYSCALLS)})")
    tools = shutil.which("setpriv"), shutil.which("unshare")
    if None in tools:
        raise SandboxUnavailable("util-linux 'setpriv' and 'unshare' are needed on PATH")
    return tools  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def _hidden_interpreter_dirs() -> list[list]:
    """[[dir the sandbox uid cannot search, [children on the interpreter's paths]], ...]: the sandbox
    covers each such dir with an empty tmpfs and binds those children back (e.g. /root of a pyenv
    install: the interpreter's stdlib becomes readable, nothing else of /root is visible)."""
    needed = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}
    needed.add(os.path.dirname(os.path.realpath(sys.executable)))
    hidden: dict[str, set[str]] = {}
    for path in needed:
        parts = path.strip("/").split("/")
        for i in range(len(parts)):
            ancestor = "/" + "/".join(parts[:i])
            if not os.stat(ancestor).st_mode & stat.S_IXOTH:
                hidden.setdefault(ancestor, set()).add(parts[i])
                break
    return [[d, sorted(c)] for d, c in sorted(hidden.items())]


def _read_available(fd: int, limit: int = PIPE_BYTES) -> bytes:
    """What is in the pipe now (its writers may still be alive: never blocks)."""
    os.set_blocking(fd, False)
    chunks, size = [], 0
    while size < limit:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _kill_sandbox(proc: subprocess.Popen, out: bytes) -> None:
    """Past the wall limit: SIGKILL the namespace's init, which takes its whole pid namespace with it (the
    first line, written before any answer code ran, names it), and let the launcher reap it and exit."""
    first = out.split(b"\n", 1)[0].split()
    if len(first) == 2 and first[0] == b"setup-ok" and first[1].isdigit():
        try:
            pidfd = os.pidfd_open(int(first[1]))
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
        except OSError:  # already gone
            pass
        try:
            proc.wait(timeout=5.0)
            return
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher; its --kill-child then kills the init
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _parse(out: bytes, nonce: bytes, exit_code: Optional[int], wall_limit_s: float) -> RunOutcome:
    lines = out.split(b"\n")
    if not lines[0].startswith(b"setup-ok"):
        error = lines[0].removeprefix(b"setup-error ").decode("utf-8", "replace")[:300]
        if not error:
            error = f"not built within {SETUP_TIMEOUT_S:g}s" if exit_code is None else f"launcher exit code {exit_code}"
        return RunOutcome(None, exit_code, error, wall_limit_s)
    verdicts = [line[len(nonce) + 1:] for line in lines[1:] if line.startswith(nonce + b" ")]
    return RunOutcome(verdicts[0].decode("ascii", "replace") if verdicts else None, exit_code, None, wall_limit_s)


def describe(outcome: RunOutcome) -> tuple[Optional[float], str]:
    """(score, reason). Nothing the answer printed or read comes back: only the kind of failure and, for
    exceptions, the name of a builtin exception class."""
    verdict, code = outcome.verdict, outcome.exit_code
    if outcome.setup_error is not None:
        return None, f"sandbox setup failed: {outcome.setup_error}"
    if verdict == "pass" and code == 0:
        return 1.0, "tests passed"
    parts = (verdict or "").split(" ", 2)
    if len(parts) == 3 and parts[0] == "fail" and parts[1] in ("answer", "tests"):
        name = parts[2] if parts[2] in _BUILTIN_EXCEPTIONS else "an exception of its own class"
        return 0.0, ("tests failed: " if parts[1] == "tests" else "answer raised before the tests: ") + name
    if code is None:
        return 0.0, f"wall time limit {outcome.wall_limit_s:g}s exceeded"
    if code == EXIT_THREADS:
        return 0.0, "answer left threads running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return 0.0, f"killed by {name} before the tests finished"
    return 0.0, f"exited (code {code}) before the tests finished"


_PROBE_TESTS = """
import errno, fractions, os, socket
assert (os.getuid(), os.getgid(), os.getgroups()) == ({uid}, {uid}, [])
try:
    open("/rlsys-sandbox-probe", "w")
except OSError as exc:
    assert exc.errno in (errno.EROFS, errno.EACCES), exc
else:
    raise AssertionError("root is writable")
try:
    socket.socket()
except PermissionError:
    pass
else:
    raise AssertionError("socket() works")
assert os.getpid() == 1 and ok
"""


def check_sandbox() -> None:
    """Raise SandboxUnavailable, with the reason, unless one real sandbox built here isolates (own uid,
    read-only root, no socket(), own pid namespace). The self-test runs once per process."""
    reason = _self_test()
    if reason is not None:
        raise SandboxUnavailable(reason)


@functools.lru_cache(maxsize=1)
def _self_test() -> Optional[str]:
    if os.geteuid() != 0:
        return ("the code sandbox must be started as root (it creates mount/pid/net namespaces, then drops "
                "to an unprivileged uid of its own)")
    try:
        outcome = run_sandboxed("ok = True\n", _PROBE_TESTS.format(uid=sandbox_uid()), wall_limit_s=30.0)
    except (SandboxUnavailable, OSError, ValueError) as exc:
        return f"cannot start the sandbox: {exc}"
    score, reason = describe(outcome)
    if score == 1.0:
        return None
    if outcome.setup_error is not None:
        reason += _launcher_says()
    return f"the sandbox self-test failed: {reason} (see docs/sandbox.md)"


def _launcher_says() -> str:
    """The launcher's own error (a sandbox's stderr is /dev/null): ``unshare`` alone, with the same flags."""
    _, unshare = _tools()
    try:
        run = subprocess.run([unshare, "--mount", "--uts", "--ipc", "--net", "--pid", "--fork", "true"],
                             stdin=subprocess.DEVNULL, capture_output=True, timeout=10.0)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"; unshare: {exc}"
    said = run.stderr.decode("utf-8", "replace").strip()[:200]
    return f"; {said}" if said else ""


def extract_code(response: str) -> str:
    """The last fenced code block (```python ... ```), else the whole response."""
    blocks = _FENCE_RE.findall(response)
    return blocks[-1] if blocks else response


@register_verifier("code")
def verify_code(response: str, reference: str) -> VerifyResult:
    """``reference`` is Python test code (asserts) run after the answer's code in its namespace; 1.0 iff
    the harness reports, with this run's nonce, that the tests ran to the end without an exception."""
    code = extract_code(response)
    parsed = code[:80]
    if not code.strip():
        return VerifyResult(0.0, None, "no code found")
    try:
        check_sandbox()
        outcome = run_sandboxed(code, reference)
    except SandboxUnavailable as exc:  # never run unsandboxed
        return VerifyResult(None, parsed, f"code sandbox unavailable: {exc}")
    except ValueError as exc:
        return VerifyResult(None, parsed, str(exc))
    score, reason = describe(outcome)
    return VerifyResult(score, parsed, reason)


verify_code.startup_check = check_sandbox  # type: ignore[attr-defined]  # run by each grading worker at start


# ---------------------------------------------------------------- sandbox side
# Shipped as source to ``python -I -S -c``: stdlib only, and no module-level names of this file (the
# spec carries every number). Runs as root in the new namespaces until _sandbox_drop returns.

def _sandbox_main(spec):
    """Build the view, drop privileges, say "setup-ok <host pid>" on the verdict pipe, run the harness."""
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        high = [fcntl.fcntl(spec[k], fcntl.F_DUPFD, 10) for k in ("in_fd", "out_fd")]  # then 3, 4 are free
        os.dup2(high[0], 3)
        os.dup2(high[1], 4)
        os.closerange(5, 1 << 16)
        host_pid = os.readlink("/proc/self")  # the host's /proc, before ours is mounted
        _sandbox_view(spec, libc)
        _sandbox_drop(spec, libc)
    except BaseException as exc:  # noqa: BLE001 - reported to the grader, which marks the answer ungradable
        os.write(4, f"setup-error {type(exc).__name__}: {exc}\n".encode())
        os._exit(1)
    os.write(4, f"setup-ok {host_pid}\n".encode())
    _sandbox_harness(spec)


def _sandbox_mount(libc, source, target, fstype, flags, data=None):
    if libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(), ctypes.c_ulong(flags),
                  data and data.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or source} on {target}: {os.strerror(err)}")


def _sandbox_view(spec, libc):
    """Everything read-only and nosuid; a minimal read-only /dev; fresh read-only /proc (this pid namespace);
    a size-capped tmpfs at /tmp owned by the sandbox uid, the one writable place."""
    ms_rdonly, ms_nosuid, ms_nodev, ms_noexec, ms_bind, ms_rec, ms_private = 1, 2, 4, 8, 4096, 16384, 1 << 18
    _sandbox_mount(libc, None, "/", None, ms_rec | ms_private)  # nothing below propagates to the host
    for hidden, children in spec["expose"]:
        fds = [os.open(os.path.join(hidden, c), os.O_PATH | os.O_DIRECTORY) for c in children]
        _sandbox_mount(libc, "tmpfs", hidden, "tmpfs", ms_nosuid | ms_nodev, "mode=0755,size=64k")
        for child, fd in zip(children, fds):
            os.mkdir(os.path.join(hidden, child))
            _sandbox_mount(libc, f"/proc/self/fd/{fd}", os.path.join(hidden, child), None, ms_bind | ms_rec)
            os.close(fd)
    attr = ctypes.create_string_buffer(struct.pack("QQQQ", 0x1 | 0x2, 0, 0, 0))  # MOUNT_ATTR_RDONLY | NOSUID
    if libc.syscall(ctypes.c_long(442), -100, b"/", ctypes.c_uint(0x8000), attr, ctypes.c_size_t(32)) != 0:
        err = ctypes.get_errno()  # mount_setattr(AT_FDCWD, "/", AT_RECURSIVE, ...): Linux >= 5.12
        raise OSError(err, f"mount_setattr read-only: {os.strerror(err)}")
    _sandbox_dev(libc)
    _sandbox_mount(libc, "proc", "/proc", "proc", ms_rdonly | ms_nosuid | ms_nodev | ms_noexec)
    _sandbox_mount(libc, "tmpfs", "/tmp", "tmpfs", ms_nosuid | ms_nodev | ms_noexec,
                   f"size={spec['scratch_bytes']},mode=0700,uid={spec['uid']},gid={spec['gid']}")


def _sandbox_dev(libc):
    """A read-only tmpfs on /dev holding only null, zero, full, random and urandom (bound from the host),
    an empty shm dir and the fd links: no ptmx, tty or kmsg, and no host /dev/shm."""
    ms_rdonly, ms_nosuid, ms_nodev, ms_noexec, ms_remount, ms_bind = 1, 2, 4, 8, 32, 4096
    names = [n for n in ("null", "zero", "full", "random", "urandom") if os.path.exists("/dev/" + n)]
    fds = [os.open("/dev/" + n, os.O_PATH) for n in names]
    _sandbox_mount(libc, "tmpfs", "/dev", "tmpfs", ms_nosuid | ms_nodev | ms_noexec, "mode=0755,size=64k")
    for name, fd in zip(names, fds):
        os.close(os.open("/dev/" + name, os.O_CREAT | os.O_WRONLY, 0o666))
        _sandbox_mount(libc, f"/proc/self/fd/{fd}", "/dev/" + name, None, ms_bind)
        os.close(fd)
    os.mkdir("/dev/shm")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, "/dev/" + name)
    _sandbox_mount(libc, None, "/dev", None, ms_remount | ms_rdonly | ms_nosuid | ms_nodev | ms_noexec)


def _sandbox_drop(spec, libc):
    """rlimits; groups, gid, uid (which clears every capability); no_new_privs; seccomp; cwd /tmp."""
    for which, value in spec["rlimits"]:
        resource.setrlimit(which, (value, value))
    os.setgroups([])
    os.setresgid(spec["gid"], spec["gid"], spec["gid"])
    os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    if libc.prctl(4, 1, 0, 0, 0) != 0 or libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_DUMPABLE, NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl")
    _sandbox_seccomp(spec["seccomp"], libc)
    os.chdir("/tmp")


def _sandbox_seccomp(sc, libc):
    """A classic-BPF filter: wrong arch (or x32) kills; listed syscalls fail with EPERM (clone3 with
    ENOSYS); clone with a CLONE_NEW* flag fails with EPERM; everything else is allowed."""
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    kill, allow, errno_ = 0x80000000, 0x7FFF0000, 0x00050000

    def op(code, k, jt=0, jf=0):
        return struct.pack("HBBI", code, jt, jf, k)

    prog = [op(ld, 4), op(jeq, sc["arch"], 1, 0), op(ret, kill), op(ld, 0)]
    if sc["x32"]:
        prog += [op(jge, 0x40000000, 0, 1), op(ret, kill)]
    for nr in sc["deny"]:
        prog += [op(jeq, nr, 0, 1), op(ret, errno_ | 1)]  # EPERM
    for nr in sc["enosys"]:
        prog += [op(jeq, nr, 0, 1), op(ret, errno_ | 38)]  # ENOSYS
    prog += [op(jeq, sc["clone"], 0, 3), op(ld, 16), op(jset, sc["clone_flags"], 0, 1), op(ret, errno_ | 1),
             op(ret, allow)]
    code = ctypes.create_string_buffer(b"".join(prog))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Fprog(len(prog), ctypes.addressof(code))
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "seccomp filter")


def _sandbox_harness(spec):
    """Run the answer, then the tests in its namespace; after each, kill whatever the answer left behind.
    Only then read the nonce and write "<nonce> pass" or "<nonce> fail <where> <exception>": the nonce
    never is in this interpreter while answer code can run. Exiting, raising SystemExit or dying on the
    way leaves no verdict, which the grader scores 0. Everything the harness calls after the answer is
    bound here first, so patching builtins or modules (``builtins.exec = ...``, ``os.write = ...``)
    does not change what it does."""
    read_fd, write_fd, exit_, kill, waitpid, listdir = os.read, os.write, os._exit, os.kill, os.waitpid, os.listdir
    exec_, compile_, len_, type_, int_, min_, join = exec, compile, len, type, int, min, b"".join
    base_exc, os_error, no_child = BaseException, OSError, ChildProcessError
    settrace, setprofile, set_signal, sleep = sys.settrace, sys.setprofile, signal.signal, time.sleep
    sigchld, sig_dfl, sigkill, exit_threads = signal.SIGCHLD, signal.SIG_DFL, signal.SIGKILL, spec["exit_threads"]

    def read(n=None):
        chunks, size = [], 0
        while n is None or size < n:
            chunk = read_fd(3, 65536 if n is None else min_(65536, n - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len_(chunk)
        return join(chunks)

    def run(source, where):
        try:
            exec_(compile_(source.decode("utf-8", "replace"), "<" + where + ">", "exec"), namespace)
        except base_exc as exc:  # noqa: BLE001 - SystemExit too: exiting early is not passing
            return "fail " + where + " " + type_(exc).__name__
        finally:
            settle()
        return None

    def settle():
        settrace(None)
        setprofile(None)
        set_signal(sigchld, sig_dfl)
        while True:  # we are pid 1: kill(-1) reaches every other process of the namespace
            try:
                kill(-1, sigkill)
            except os_error:
                pass
            try:
                waitpid(-1, 0)
            except no_child:
                break
        for _ in range(100):  # a thread the answer joined can take a moment to leave /proc
            if len_(listdir("/proc/self/task")) == 1:
                return
            sleep(0.002)
        exit_(exit_threads)

    module = types.ModuleType("__main__")
    namespace = module.__dict__
    sys.modules["__main__"] = module
    failure = run(read(int_(read(16))), "answer")
    tests = read(int_(read(16)))
    failure = failure or run(tests, "tests")
    verdict = (failure or "pass").encode("ascii", "replace").replace(b"\n", b" ")
    write_fd(4, read() + b" " + verdict + b"\n")
    exit_(0)  # not the answer's atexit handlers


@functools.lru_cache(maxsize=1)
def _sandbox_source() -> str:
    functions = (_sandbox_main, _sandbox_mount, _sandbox_view, _sandbox_dev, _sandbox_drop, _sandbox_seccomp,
                 _sandbox_harness)
    return ("import ctypes, fcntl, json, os, resource, signal, struct, sys, time, types\n\n"
            + "\n\n".join(inspect.getsource(f) for f in functions)
            + "\n_sandbox_main(json.loads(sys.argv[1]))\n")
