"""The ``code`` sandbox as a boundary: every escape below is tried by a real answer in a real sandbox.

Most answers record what happened to the attempt (an errno name, "connected", ...) and the reference
tests assert it was refused, so a pass means "blocked as expected"; the host side is checked too (no file
appeared, no connection arrived, no process is left). docs/sandbox.md says what blocks each one.
"""
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlsys.reward import code_sandbox
from rlsys.reward.code_sandbox import describe, run_sandboxed, verify_code
from rlsys.reward.service import RewardService

REPO = Path(__file__).resolve().parents[2]
ADD_TESTS = "assert add(2, 3) == 5\n"
ERRNO = "import errno\n\ndef attempt(fn):\n    try:\n        fn()\n        return 'done'\n    except OSError as exc:\n" \
        "        return errno.errorcode.get(exc.errno, str(exc.errno))\n\n"


@pytest.fixture(scope="module", autouse=True)
def sandbox_works_here():
    code_sandbox.check_sandbox()  # raises SandboxUnavailable with the reason on a machine that cannot


def grade(code: str, tests: str = "pass\n", **kw) -> tuple:
    return describe(run_sandboxed(code, tests, **kw))


def host_processes_with(token: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


def test_correct_and_wrong_answers():
    assert grade("def add(a, b):\n    return a + b\n", ADD_TESTS) == (1.0, "tests passed")
    assert grade("def add(a, b):\n    return a - b\n", ADD_TESTS) == (0.0, "tests failed: AssertionError")
    assert grade("def add(a, b):\n    return a +\n", ADD_TESTS) == (0.0, "answer raised before the tests: SyntaxError")


# ---------------------------------------------------------------- a pass the answer cannot forge

@pytest.mark.parametrize("exit_, reason", [
    ("import os\nos._exit(0)", "exited (code 0) before the tests finished"),
    ("raise SystemExit(0)", "answer raised before the tests: SystemExit"),
    ("import sys\nsys.exit(0)", "answer raised before the tests: SystemExit"),
    ("import os\nos.abort()", "killed by SIG"),  # pid 1 ignores SIGABRT; abort()'s last resort is a fault
    # As its namespace's init it cannot kill itself; the tests run, and fail.
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "tests failed: NameError"),
    ("import os\nfor fd in range(20):\n    try:\n        os.write(fd, b'pass\\n')\n    except OSError:\n"
     "        pass\nos._exit(0)", "exited (code 0) before the tests finished"),  # a verdict without the nonce
])
def test_leaving_before_the_tests_scores_zero(exit_, reason):
    score, got = grade(exit_, ADD_TESTS)
    assert score == 0.0 and got.startswith(reason), got


def test_exiting_from_inside_the_tests_scores_zero():
    answer = "def add(a, b):\n    import sys\n    sys.exit(0)\n"
    assert grade(answer, ADD_TESTS) == (0.0, "tests failed: SystemExit")


def test_the_nonce_is_not_in_memory_while_answer_code_runs():
    # A function the tests call walks every frame and writes each 32-hex-digit value as a verdict.
    answer = ("import os, re, sys\n\ndef add(a, b):\n    frame = sys._getframe()\n    while frame:\n"
              "        for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):\n"
              "            if isinstance(value, (bytes, str)) and re.fullmatch('[0-9a-f]{32}', str(value, 'ascii')\n"
              "                    if isinstance(value, bytes) else value):\n"
              "                os.write(4, (value if isinstance(value, bytes) else value.encode()) + b' pass\\n')\n"
              "        frame = frame.f_back\n    os._exit(0)\n")
    assert grade(answer, ADD_TESTS) == (0.0, "exited (code 0) before the tests finished")


@pytest.mark.parametrize("patch", [
    "import builtins\nbuiltins.exec = lambda *a, **k: None\n",  # the tests would never run
    "import builtins\nbuiltins.compile = lambda *a, **k: compile('pass', 'x', 'exec')\n",
    "import builtins\nbuiltins.BaseException = KeyboardInterrupt\n",  # the harness's except clause
    "import os\n_write = os.write\nos.write = lambda fd, data: _write(fd, data.split(b' ')[0] + b' pass\\n')\n",
])
def test_patching_builtins_or_os_does_not_change_the_harness(patch):
    # No add() is defined: the tests fail with NameError unless the patch subverted the harness.
    assert grade(patch, ADD_TESTS) == (0.0, "tests failed: NameError")


def test_the_tests_are_not_readable_before_they_run():
    marker = secrets.token_hex(8)
    answer = ("import os\nseen = open('/proc/self/cmdline', 'rb').read()\n"
              "for name in os.listdir('/tmp'):\n    seen += open('/tmp/' + name, 'rb').read()\n"
              f"found = {marker!r}.encode() in seen\n")
    assert grade(answer, f"# {marker}\nassert not found\n") == (1.0, "tests passed")


# ---------------------------------------------------------------- file system

def test_nothing_outside_the_scratch_dir_is_writable(tmp_path):
    targets = {"repo": REPO / f"escape-{secrets.token_hex(4)}", "venv": Path(sys.prefix) / "escape.pth",
               "pytest_tmp": tmp_path / "escape", "var_tmp": Path("/var/tmp") / f"escape-{secrets.token_hex(4)}",
               "dev_shm": Path("/dev/shm") / f"escape-{secrets.token_hex(4)}"}
    answer = ERRNO + "results = {\n" + "".join(
        f"    {k!r}: attempt(lambda: open({str(p)!r}, 'w').write('x')),\n" for k, p in targets.items()) + \
        "    'chmod_repo': attempt(lambda: __import__('os').chmod(" + repr(str(REPO)) + ", 0o777)),\n" \
        "    'scratch': attempt(lambda: open('/tmp/ok', 'w').write('x')),\n}\n"
    tests = ("assert results.pop('scratch') == 'done'\n"
             "assert set(results.values()) <= {'EROFS', 'ENOENT', 'EACCES', 'EPERM'}, results\n"
             "assert results['pytest_tmp'] == 'ENOENT'  # the host's /tmp is not even visible\n")
    assert grade(answer, tests) == (1.0, "tests passed")
    assert not any(p.exists() for p in targets.values())


def test_dev_holds_only_the_harmless_devices():
    answer = ERRNO + "import os\ndevs = sorted(os.listdir('/dev'))\n" \
        "results = {n: attempt(lambda n=n: os.close(os.open('/dev/' + n, os.O_RDWR))) for n in ('ptmx', 'tty', 'kmsg')}\n" \
        "io = open('/dev/null', 'w').write('x'), len(open('/dev/urandom', 'rb').read(8)), open('/dev/zero', 'rb').read(2)\n"
    tests = ("assert devs == ['fd', 'full', 'null', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'urandom', 'zero'], devs\n"
             "assert results == {'ptmx': 'ENOENT', 'tty': 'ENOENT', 'kmsg': 'ENOENT'}, results\n"
             "assert io == (1, 8, bytes(2))\n")
    assert grade(answer, tests) == (1.0, "tests passed")


def test_read_files_do_not_come_back_in_the_reason():
    passwd = Path("/etc/passwd").read_text()
    answer = ("import os, sys\ndata = open('/etc/passwd').read()\nprint(data)\nsys.stderr.write(data)\n"
              "for fd in range(3, 20):\n    try:\n        os.write(fd, data.encode())\n    except OSError:\n"
              "        pass\n")
    leaks = [answer + "raise ValueError(data)\n",
             answer + "raise type(data.splitlines()[0], (Exception,), {})()\n"]  # the class name carries it
    for code in leaks:
        score, reason = grade(code)
        assert score == 0.0
        assert not any(line and line in reason for line in passwd.splitlines()), reason
        assert "root:" not in reason and len(reason) < 100
    result = verify_code(leaks[1], "pass\n")
    assert result.reason == "answer raised before the tests: an exception of its own class"


def test_runs_as_its_own_uid_in_its_own_pid_namespace():
    answer = "import os\nids = os.getresuid(), os.getresgid(), os.getgroups(), os.getpid()\n" \
             "pids = sorted(p for p in os.listdir('/proc') if p.isdigit())\n"
    uid = code_sandbox.sandbox_uid()
    tests = f"assert ids == (({uid},) * 3, ({uid},) * 3, [], 1), ids\nassert pids == ['1'], pids\n"
    assert grade(answer, tests) == (1.0, "tests passed")


def test_no_new_namespaces_no_ptrace_no_mounts():
    answer = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n\ndef err(ret):\n"
              "    return ctypes.get_errno() if ret == -1 else 'done'\n\n"
              "results = [err(libc.unshare(0x10000000)), err(libc.unshare(0x40000000)),\n"  # CLONE_NEWUSER, NEWNET
              "           err(libc.ptrace(0, 0, 0, 0)), err(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None))]\n")
    assert grade(answer, "assert results == [1, 1, 1, 1], results\n") == (1.0, "tests passed")  # EPERM


# ---------------------------------------------------------------- sockets

def test_no_sockets_of_any_kind(tmp_path):
    token = secrets.token_hex(4)
    listeners = []
    for path in (tmp_path / "s.sock", Path("/var/tmp") / f"rlsys-test-{token}.sock"):
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        os.chmod(path, 0o777)
        listeners.append((s, str(path)))
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(f"\0rlsys-test-{token}")
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    try:
        for s in [s for s, _ in listeners] + [abstract, tcp]:
            s.listen()
            s.settimeout(0.2)
        answer = ERRNO + "import socket\n\ndef connect(family, address):\n" \
            "    return attempt(lambda: socket.socket(family).connect(address))\n\nresults = [\n" + "".join(
                f"    connect(socket.AF_UNIX, {p!r}),\n" for _, p in listeners) + \
            f"    connect(socket.AF_UNIX, {chr(0) + 'rlsys-test-' + token!r}),\n" \
            f"    connect(socket.AF_INET, ('127.0.0.1', {tcp.getsockname()[1]})),\n" \
            "    attempt(lambda: socket.socketpair()),\n]\n" \
            "ifaces = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]\n"
        tests = "assert results == ['EPERM'] * 5, results\nassert ifaces == ['lo'], ifaces\n"
        assert grade(answer, tests) == (1.0, "tests passed")
        for s in [s for s, _ in listeners] + [abstract, tcp]:
            with pytest.raises(socket.timeout):
                s.accept()
    finally:
        for s in [s for s, _ in listeners] + [abstract, tcp]:
            s.close()
        os.unlink(listeners[1][1])


# ---------------------------------------------------------------- processes and limits

def test_a_setsid_grandchild_is_dead_after_the_verdict():
    token = f"{secrets.randbelow(10**6) + 10**6}.5"  # a unique argument to find it by
    spawn = ("import os\n\ndef spawn():\n    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n"
             f"            os.execv('/bin/sleep', ['sleep', {token!r}])\n        os._exit(0)\n    os.wait()\n\n")
    assert grade(spawn + "spawn()\n") == (1.0, "tests passed")  # left by the answer's top level
    assert grade(spawn + "def add(a, b):\n    spawn()\n    return a + b\n", ADD_TESTS) == (1.0, "tests passed")
    assert grade(spawn + "spawn()\nimport time\ntime.sleep(60)\n", wall_limit_s=1.0) == \
        (0.0, "wall time limit 1s exceeded")
    assert host_processes_with(token) == []


def test_memory_and_time_limits():
    assert grade("x = bytearray(4 * 1024 ** 3)\n") == (0.0, "answer raised before the tests: MemoryError")
    t0 = time.monotonic()
    assert grade("while True:\n    pass\n", wall_limit_s=0.5) == (0.0, "wall time limit 0.5s exceeded")
    assert grade("import time\ntime.sleep(60)\n", wall_limit_s=0.5) == (0.0, "wall time limit 0.5s exceeded")
    assert time.monotonic() - t0 < 30  # bounded; generous for a loaded 2-core machine
    assert grade("open('/tmp/big', 'wb').write(b'x' * (32 << 20))\n") == \
        (0.0, "answer raised before the tests: OSError")  # RLIMIT_FSIZE (16 MiB)


@pytest.mark.slow
def test_a_fork_bomb_is_contained():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.monotonic()
    assert grade(bomb, wall_limit_s=2.0) == (0.0, "wall time limit 2s exceeded")
    assert time.monotonic() - t0 < 30
    time.sleep(0.2)
    uid = code_sandbox.sandbox_uid()
    assert [p for p in filter(str.isdigit, os.listdir("/proc")) if _uid_of(p) == uid] == []
    assert grade("def add(a, b):\n    return a + b\n", ADD_TESTS) == (1.0, "tests passed")


def _uid_of(pid: str):
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


# ---------------------------------------------------------------- the grading service survives

KILLERS = [
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",  # getppid() is 0 in the namespace: own group
    "import os, signal\nos.killpg(os.getpgid(0), signal.SIGKILL)",
    "import os\nos.killpg(0, 9)",
    "import os\n\ndef add(a, b):\n    os.kill(os.getppid(), 9)\n    os.killpg(0, 9)\n",  # from the tests
    "import os, signal\nos.kill(-1, signal.SIGKILL)",
    "import os, signal\nfor p in os.listdir('/proc'):\n    if p.isdigit() and int(p) != os.getpid():\n"
    "        os.kill(int(p), signal.SIGKILL)",  # every process it can see: none but itself
]


@pytest.mark.slow
def test_answers_that_try_to_kill_the_grader_do_not_disable_the_service():
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    with RewardService(num_workers=1, timeout_s=10.0, verifier_paths=("rlsys.reward.code_sandbox:verify_code",)) \
            as svc:
        pids = svc.worker_pids()
        requests = [("code", good, ADD_TESTS)] + [("code", k, ADD_TESTS) for k in KILLERS] + [("code", good, ADD_TESTS)]
        results, report = svc.grade(requests)
        assert [r.score for r in results] == [1.0] + [0.0] * len(KILLERS) + [1.0]
        assert report.num_worker_deaths == 0 and svc.worker_pids() == pids and svc.num_replaced == 0
        again, _ = svc.grade([("code", good, ADD_TESTS), ("code", "def add(a, b):\n    return 0", ADD_TESTS)])
        assert [r.score for r in again] == [1.0, 0.0]


# ---------------------------------------------------------------- refusing to run unsandboxed

def test_the_sandbox_check_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(code_sandbox.os, "geteuid", lambda: 1000)
    code_sandbox._self_test.cache_clear()
    try:
        with pytest.raises(code_sandbox.SandboxUnavailable, match="must be started as root"):
            code_sandbox.check_sandbox()
    finally:
        monkeypatch.undo()
        code_sandbox._self_test.cache_clear()
    monkeypatch.setattr(code_sandbox.shutil, "which", lambda name: None)
    code_sandbox._tools.cache_clear()
    code_sandbox._self_test.cache_clear()
    try:
        with pytest.raises(code_sandbox.SandboxUnavailable, match="'setpriv' and 'unshare' are needed"):
            code_sandbox.check_sandbox()
        result = verify_code("def add(a, b):\n    return a + b\n", ADD_TESTS)  # refuses, does not run it
        assert result.score is None and "'setpriv' and 'unshare' are needed" in result.reason
    finally:
        monkeypatch.undo()
        code_sandbox._tools.cache_clear()
        code_sandbox._self_test.cache_clear()


@pytest.mark.slow
def test_a_service_with_the_code_verifier_fails_at_start_where_no_sandbox_can_be_built():
    # Root without capabilities (an empty bounding set) stands for a container without CAP_SYS_ADMIN.
    script = ("from rlsys.reward.service import RewardService\n"
              "try:\n    RewardService(1, 5.0, ('rlsys.reward.code_sandbox:verify_code',))\n"
              "except RuntimeError as exc:\n    print(exc)\nelse:\n    print('started')\n")
    run = subprocess.run(["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", sys.executable, "-c", script],
                         cwd=REPO, capture_output=True, text=True, timeout=240)
    assert "SandboxUnavailable: the sandbox self-test failed" in run.stdout, run.stdout + run.stderr
    assert "unshare failed: Operation not permitted" in run.stdout
