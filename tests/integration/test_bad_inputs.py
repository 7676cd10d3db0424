"""Bad inputs to a real ``rlsys train`` / ``rlsys eval``: each ends in seconds with exit 2 and one line
naming the key, file or row, before anything is written to the run dir and before Ray starts.

Every case runs the console script as a user does (a subprocess, RAY_ADDRESS removed unless the case
sets it). Cases that fail before the model is built get an empty ``model.cache_dir`` and check it
stays empty, and must end within BEFORE_MODEL_S (the check phase imports neither ray nor torch: ~3 s
on an idle 2-core machine); the prompt-length cases need the tokenizer, so they reuse (or build) the
tiny model in ``.cache/rlsys`` and are marked integration. No case starts Ray.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import REPO

pytestmark = pytest.mark.slow  # a few seconds per subprocess

RLSYS = Path(sys.executable).parent / "rlsys"  # the console script of this venv
DEMO = str(REPO / "configs" / "demo.yaml")
CACHE = f"model.cache_dir={REPO / '.cache' / 'rlsys'}"
BEFORE_MODEL_S = 60  # generous for a loaded machine: these cases take ~3 s on an idle one
MAX_SECONDS = 180  # the prompt-length cases load the model's tokenizer (torch, transformers)


def rlsys(*args: str, timeout: float = 300, ray_address: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    if ray_address is not None:
        env["RAY_ADDRESS"] = ray_address
    start = time.monotonic()
    done = subprocess.run([str(RLSYS), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    done.seconds = time.monotonic() - start
    print(f"rlsys {args[0]}: rc {done.returncode} after {done.seconds:.1f}s: {done.stderr.strip()[-500:]}")
    return done


def assert_refused(done: subprocess.CompletedProcess, *expected: str, within: float = BEFORE_MODEL_S) -> str:
    """Exit 2, one line on stderr naming each ``expected`` part, no traceback, no Ray, in ``within`` seconds."""
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, done.stderr[-3000:]
    for part in expected:
        assert part in lines[0], lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert "Started a local Ray instance" not in done.stderr + done.stdout
    assert "starting actors" not in done.stdout
    assert done.seconds < within
    return lines[0]


def assert_nothing_written(run_dir: Path) -> None:
    for name in ("config.yaml", "metrics.jsonl", "checkpoints", "summary.json"):
        assert not (run_dir / name).exists(), name


def train(run_dir: Path, *overrides: str, cache: str = CACHE, ray_address: str | None = None
          ) -> subprocess.CompletedProcess:
    return rlsys("train", DEMO, f"trainer.run_dir={run_dir}", cache, *overrides, ray_address=ray_address)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def empty_cache(tmp_path) -> Path:
    """A model cache the run must not build into: proof the check came before the model build."""
    cache = tmp_path / "cache"
    cache.mkdir()
    return cache


def test_unknown_default_verifier(tmp_path, empty_cache):
    done = train(tmp_path / "run", "data.default_verifier=arithmatic", cache=f"model.cache_dir={empty_cache}")
    assert_refused(done, "data.default_verifier='arithmatic'", "unknown verifier", "arithmetic")
    assert_nothing_written(tmp_path / "run")
    assert not any(empty_cache.iterdir())


def test_unknown_verifier_in_a_dataset_row(tmp_path, empty_cache):
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"{i}+1=", "reference": str(i + 1)} for i in range(40)]
                       + [{"prompt": "9+9=", "reference": "18", "verifier": "nosuch"}])
    done = train(tmp_path / "run", f"data.source={data}", "data.num_eval=4",
                 cache=f"model.cache_dir={empty_cache}")
    assert_refused(done, f"{data}: line 41: column 'verifier'", "unknown verifier 'nosuch'")
    assert_nothing_written(tmp_path / "run")
    assert not any(empty_cache.iterdir())


def test_malformed_dataset_fails_before_the_model_is_built(tmp_path, empty_cache):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "1+1=", "reference": "2"}\n{"prompt": "2+2=", "reference": \n')
    done = train(tmp_path / "run", f"data.source={data}", cache=f"model.cache_dir={empty_cache}")
    assert_refused(done, f"{data}: line 2: invalid JSON")
    missing = write_jsonl(tmp_path / "missing.jsonl", [{"prompt": "1+1=", "reference": "2"}, {"prompt": "2+2="}])
    done = train(tmp_path / "run", f"data.source={missing}", cache=f"model.cache_dir={empty_cache}")
    assert_refused(done, f"{missing}: line 2: column 'reference' is missing")
    assert_nothing_written(tmp_path / "run")
    assert not any(empty_cache.iterdir())


def test_too_few_rows_fail_before_the_model_is_built(tmp_path, empty_cache):
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"{i}+1=", "reference": str(i + 1)} for i in range(40)])
    done = train(tmp_path / "run", f"data.source={data}", cache=f"model.cache_dir={empty_cache}")  # demo: 96 held out
    assert_refused(done, f"data.num_eval=96: data.source='{data}' has 40 rows; hold out fewer")
    assert_nothing_written(tmp_path / "run")
    assert not any(empty_cache.iterdir())


def test_eval_checks_every_dataset_before_the_model_is_built(tmp_path, empty_cache):
    bad = write_jsonl(tmp_path / "v.jsonl", [{"prompt": "1+1=", "reference": "2", "verifier": "nosuch"}])
    done = rlsys("eval", DEMO, "--data", "builtin:arithmetic", "--data", str(bad), f"model.cache_dir={empty_cache}")
    assert_refused(done, f"rlsys eval: {bad}: line 1: column 'verifier': unknown verifier 'nosuch'")
    malformed = tmp_path / "m.jsonl"
    malformed.write_text('{"prompt": "1+1=", "reference": "2"}\n{"prompt": "2+2=", "reference": \n')
    done = rlsys("eval", DEMO, "--data", str(malformed), f"model.cache_dir={empty_cache}")
    assert_refused(done, f"rlsys eval: {malformed}: line 2: invalid JSON")
    assert not any(empty_cache.iterdir())


def test_bad_fields_are_each_named(tmp_path):
    done = train(tmp_path / "run", "data.num_train=-5", "algo.eps_low=1.5", "learner.lr=inf", "learner.zero_stage=1",
                 "rollout.num_cpus_per_worker=-1")
    line = assert_refused(done, "data.num_train=-5: must be > 0", "algo.eps_low=1.5: must be in (0, 1)",
                          "learner.lr=inf: must be a finite number", "learner.zero_stage=1: must be one of [2, 3]",
                          "rollout.num_cpus_per_worker=-1.0: must be >= 0")
    assert "num_eval" not in line
    assert_nothing_written(tmp_path / "run")


def test_embedded_cluster_larger_than_the_machine(tmp_path):
    workers = (os.cpu_count() or 1) + 1  # one CPU each: one more than the machine has
    done = train(tmp_path / "run", f"rollout.num_workers={workers}", "rollout.num_cpus_per_worker=1")
    assert_refused(done, f"rollout.num_workers={workers}", "rollout.num_cpus_per_worker=1",
                   f"the embedded cluster has {os.cpu_count()} (os.cpu_count())")
    assert_nothing_written(tmp_path / "run")


def test_unreachable_cluster_address_fails_fast(tmp_path):
    with socket.socket() as held:  # bound and held, never listening: nothing answers there
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}", f"http://127.0.0.1:{port}"):
            done = train(tmp_path / "run", f"cluster.address={address}")
            assert_refused(done, f"cluster.address={address!r}: nothing answers at 127.0.0.1:{port}")
        done = train(tmp_path / "run", ray_address=f"http://127.0.0.1:{port}")  # as `ray job submit` sets it
        assert_refused(done, f"RAY_ADDRESS='http://127.0.0.1:{port}': nothing answers at 127.0.0.1:{port}")
    assert_nothing_written(tmp_path / "run")


def fake_run(run_dir: Path, *overrides: str) -> None:
    """A run dir as a run leaves it: its config.yaml and a checkpoint (a stand-in learner writes no shards)."""
    from rlsys.config import load_config
    from rlsys.orchestration import checkpoint

    class NoLearner:
        def save_checkpoint(self, path: str) -> None:
            Path(path).mkdir(parents=True)

    load_config(DEMO, [f"trainer.run_dir={run_dir}", CACHE, *overrides]).write(run_dir / "config.yaml")
    state = checkpoint.RunState(step=2, policy_version=2, controller={}, stream={}, replay={})
    checkpoint.save(run_dir, state, NoLearner())


def test_resume_with_a_changed_config_is_refused_before_anything_is_written(tmp_path):
    run_dir = tmp_path / "run"
    fake_run(run_dir)
    saved = (run_dir / "config.yaml").read_bytes()
    done = train(run_dir, "data.seed=1", "trainer.total_steps=300")
    line = assert_refused(done, f"trainer.run_dir={str(run_dir)!r} holds a checkpoint (step_000002)",
                          "data.seed: 0 -> 1")
    assert "total_steps" not in line  # may change on resume
    assert (run_dir / "config.yaml").read_bytes() == saved
    assert not (run_dir / "metrics.jsonl").exists()


def test_metrics_without_a_checkpoint_are_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"kind": "train", "step": 0}\n')
    done = train(run_dir)
    assert_refused(done, f"trainer.run_dir={str(run_dir)!r} holds metrics.jsonl of an earlier run but no checkpoint "
                         f"to resume from: choose another trainer.run_dir or remove it")
    assert not (run_dir / "config.yaml").exists() and not (run_dir / "checkpoints").exists()


def long_prompts(tmp_path: Path) -> Path:
    # The tiny model's tokenizer is one token per character plus <bos>; the demo leaves 64 - 8 = 56
    # prompt tokens, so row 3 (62 characters, 63 tokens) is too long.
    rows = [{"prompt": f"{i}+{i}=", "reference": str(2 * i)} for i in range(2)]
    rows.append({"prompt": "+".join(["12345"] * 10) + "+1=", "reference": "61726"})
    return write_jsonl(tmp_path / "long.jsonl", rows)


@pytest.mark.integration  # builds the tiny model if .cache/rlsys has none
def test_prompt_too_long_for_the_context_train(tmp_path):
    data = long_prompts(tmp_path)
    done = train(tmp_path / "run", f"data.source={data}", "data.num_eval=0", "data.prompts_per_step=2")
    assert_refused(done, f"{data}: line 3: column 'prompt' is 63 tokens, more than the 56 that fit",
                   "rollout.max_model_len=64 less rollout.max_new_tokens=8", within=MAX_SECONDS)
    assert_nothing_written(tmp_path / "run")


@pytest.mark.integration  # builds the tiny model if .cache/rlsys has none
def test_prompt_too_long_for_the_context_eval(tmp_path):
    data = long_prompts(tmp_path)
    done = rlsys("eval", DEMO, "--data", str(data), "--k", "2", CACHE)
    assert_refused(done, f"{data}: line 3: column 'prompt' is 63 tokens", "rollout.max_model_len=64",
                   within=MAX_SECONDS)


@pytest.mark.integration
def test_a_joined_cluster_too_small_is_a_config_error_naming_the_keys(ray_cluster):
    """The one check that needs the cluster (here the session's 8-CPU one); driver.start_run runs it
    before config.yaml is written, and the CLI prints it as one line with exit 2."""
    from rlsys.config import ConfigError, load_config
    from rlsys.orchestration.cluster import check_resources

    cfg = load_config(DEMO, ["rollout.num_workers=20", "rollout.num_cpus_per_worker=1"])
    with pytest.raises(ConfigError, match=r"the cluster has 8 CPUs but the config asks for 20\.75 "
                                          r"\(rollout.num_workers=20 x rollout.num_cpus_per_worker=1 \+ "):
        check_resources(cfg)
    with pytest.raises(ConfigError, match=r"GPUs but the config asks for 128 \(rollout.num_workers=2 x "
                                          r"rollout.num_gpus_per_worker=64 \+ learner.num_ranks=2 x"):
        check_resources(load_config(DEMO, ["rollout.num_gpus_per_worker=64"]))
