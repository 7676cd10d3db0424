"""The pure parts import without ray, vllm or deepspeed (house style rule 11)."""
import subprocess
import sys

PURE = ["rlsys.algo", "rlsys.algo.loss", "rlsys.algo.advantages", "rlsys.algo.entropy", "rlsys.algo.batch",
        "rlsys.algo.batch_buffer",
        "rlsys.config", "rlsys.types", "rlsys.control", "rlsys.metrics.compute", "rlsys.reward.verifiers",
        "rlsys.data.tasks"]


def test_pure_modules_do_not_import_heavy_dependencies():
    code = ("import sys\n"
            + "".join(f"import {m}\n" for m in PURE)
            + "bad = [m for m in ('ray', 'vllm', 'deepspeed') if m in sys.modules]\n"
            + "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
