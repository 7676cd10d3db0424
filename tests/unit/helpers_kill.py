"""Verifiers that kill their own grading worker, its forkserver or its process group, for the
reward-service tests; loaded in the workers by dotted path (``tests.unit.helpers_kill:kill_verifier``)."""
import os
import signal
import time

from rlsys.reward.verifiers import register_verifier
from rlsys.types import VerifyResult


@register_verifier("test_kill")
def kill_verifier(response: str, reference: str) -> VerifyResult:
    """KILL_WORKER: SIGKILL itself. KILL_FORKSERVER: SIGKILL its parent, the forkserver (the worker then
    dies with it). KILL_GROUP: SIGKILL its process group. KILL_FORKSERVER_LATER: a detached grandchild
    kills the forkserver 0.5 s later, while the worker is idle. Else exact comparison."""
    if response == "KILL_WORKER":
        os.kill(os.getpid(), signal.SIGKILL)
    if response == "KILL_FORKSERVER":
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(30.0)  # bounded: dies of PR_SET_PDEATHSIG long before
    if response == "KILL_GROUP":
        os.killpg(os.getpgid(0), signal.SIGKILL)
    if response == "KILL_FORKSERVER_LATER":
        forkserver = os.getppid()
        if os.fork() == 0:
            os.setsid()
            time.sleep(0.5)
            os.kill(forkserver, signal.SIGKILL)
            os._exit(0)
    return VerifyResult(1.0 if response == reference else 0.0, response, "compared")


def _refuse() -> None:
    raise RuntimeError("this verifier cannot be set up here")


def unavailable_verifier(response: str, reference: str) -> VerifyResult:
    """Stands for a verifier (like ``code`` without namespaces) whose ``startup_check`` fails."""
    return VerifyResult(None, None, "never called")


unavailable_verifier.startup_check = _refuse
