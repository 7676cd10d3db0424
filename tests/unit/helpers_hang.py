"""Deliberately misbehaving verifiers for the reward-service tests, loaded in the grading workers by
dotted path (``verifier_paths=("tests.unit.helpers_hang:hang_verifier",)``)."""
import os
import time

from rlsys.reward.verifiers import register_verifier
from rlsys.types import VerifyResult


@register_verifier("test_hang")
def hang_verifier(response: str, reference: str) -> VerifyResult:
    """Sleeps for 60 s on a response starting with "HANG" (sleeping, so the stuck worker does not eat
    a CPU the other tests need; bounded, so a worker orphaned by a killed test run goes away);
    "CRASH" kills the process; "RAISE" raises; else exact comparison."""
    if response.startswith("HANG"):
        time.sleep(60.0)
    if response == "CRASH":
        os._exit(3)
    if response == "RAISE":
        raise ValueError("boom")
    return VerifyResult(1.0 if response == reference else 0.0, response, "compared")
