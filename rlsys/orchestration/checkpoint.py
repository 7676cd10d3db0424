"""Run checkpoints: everything needed to continue a run where it stopped.

``<run_dir>/checkpoints/step_000010/`` holds ``learner/`` (the DeepSpeed checkpoint: weights and
optimiser, each rank writes its own shard, so on several nodes run_dir must be a shared
filesystem) and ``state.pkl`` (the driver-side state below). ``<run_dir>/checkpoints/latest`` is
written last and names the newest complete checkpoint, so a crash mid-save leaves the previous one
in force. Ray appears only through the typed group methods passed in.
"""
from __future__ import annotations

import pickle
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rlsys.config import Config, ConfigError, TrainerConfig, load_config

STATE_FILE = "state.pkl"
LATEST_FILE = "latest"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"


@dataclass
class RunState:
    """Driver-side state at a step boundary (``step`` steps done, weights at ``policy_version``)."""

    step: int
    policy_version: int
    controller: dict
    stream: dict
    replay: dict
    eval_before: dict = field(default_factory=dict)
    batch_buffer: dict = field(default_factory=dict)  # UEC-RL's batch buffer ({} when off)

    def __setstate__(self, state: dict) -> None:
        """Unpickling; also loads checkpoints written while the driver still kept a per-prompt entropy
        memory (``entropy_memory``, which no controller read: dropped)."""
        self.__dict__.update({k: v for k, v in state.items() if k not in RETIRED_FIELDS})


RETIRED_FIELDS = frozenset({"entropy_memory"})  # RunState fields of older checkpoints that nothing reads any more


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def latest(run_dir: str | Path) -> Optional[Path]:
    """The newest complete checkpoint of the run, or None when it has none."""
    pointer = checkpoints_dir(run_dir) / LATEST_FILE
    if not pointer.exists():
        return None
    path = checkpoints_dir(run_dir) / pointer.read_text().strip()
    if not (path / STATE_FILE).exists():
        raise FileNotFoundError(f"{pointer} names {path.name}, which has no {STATE_FILE}: the checkpoint "
                                f"directory was changed by hand; point {LATEST_FILE} at a complete step_* dir")
    return path


def is_due(trainer: TrainerConfig, steps_done: int) -> bool:
    """Save after every ``save_every`` steps and always after the last one."""
    if steps_done >= trainer.total_steps:
        return True
    return trainer.save_every > 0 and steps_done % trainer.save_every == 0


def check_resume_mode(trainer: TrainerConfig) -> Optional[Path]:
    """The checkpoint to resume from (None: start fresh); refuses to start over a run's checkpoints
    with ``trainer.resume=never``, and over an earlier run's metrics with no checkpoint to continue
    them from, so nothing already done is overwritten."""
    try:
        found = latest(trainer.run_dir)
    except FileNotFoundError as e:  # a latest pointer naming an incomplete checkpoint
        raise ConfigError(f"trainer.run_dir={trainer.run_dir!r}: {e}") from None
    if found is not None and trainer.resume == "never":
        raise ConfigError(f"trainer.run_dir={trainer.run_dir!r} already holds checkpoints (latest {found.name}) "
                          f"and trainer.resume=never: pass trainer.resume=auto to continue that run, or "
                          f"choose another trainer.run_dir")
    metrics = Path(trainer.run_dir) / METRICS_FILE
    if found is None and metrics.is_file() and metrics.stat().st_size > 0:
        raise ConfigError(f"trainer.run_dir={trainer.run_dir!r} holds {METRICS_FILE} of an earlier run but no "
                          f"checkpoint to resume from: choose another trainer.run_dir or remove it")
    return found


# Keys that may change when a run is resumed: how long it goes on, how often it evaluates and saves,
# where and on what it runs, and how patiently it grades, restarts and waits. Everything else (the
# model, the data and its seeds, the algorithm, the learner's shape, sampling) defines the run the
# checkpoint belongs to, so changing it would silently continue a different run. rollout.num_workers
# is placement only: sampling seeds come from each request, not from the engine that serves it.
RESUME_MAY_CHANGE_SECTIONS = ("cluster",)
RESUME_MAY_CHANGE = frozenset({
    "trainer.total_steps", "trainer.run_dir", "trainer.resume", "trainer.eval_every", "trainer.save_every",
    "trainer.eval_samples", "trainer.eval_temperature",
    "trainer.keep_checkpoints", "trainer.max_nonfinite_steps",
    "model.cache_dir",
    "rollout.num_workers", "rollout.num_cpus_per_worker", "rollout.num_gpus_per_worker", "rollout.max_restarts",
    "rollout.gpu_memory_utilization", "rollout.kv_cache_space_gb", "rollout.cpu_threads_bind",
    "rollout.resources", "reward.num_actors", "reward.resources", "learner.resources", "learner.placement",
    "reward.num_workers", "reward.timeout_s", "reward.num_cpus", "reward.max_restarts",
    "learner.num_cpus_per_rank", "learner.num_gpus_per_rank",
})


def check_resume_config(cfg: Config, found: Optional[Path]) -> None:
    """Refuse to resume checkpoint ``found`` with a config that differs from the one the run was
    started with (``<run_dir>/config.yaml``) in a key outside RESUME_MAY_CHANGE, naming each
    difference ``key: old -> new``. A run dir without a saved config passes."""
    saved = Path(cfg.trainer.run_dir) / CONFIG_FILE
    if found is None or not saved.is_file():
        return
    try:
        old = load_config(str(saved))
    except ConfigError as e:
        raise ConfigError(f"{saved}: cannot read the config of the run to resume ({e}); choose another "
                          f"trainer.run_dir") from None
    before, after = _flat(old.to_dict()), _flat(cfg.to_dict())
    changed = [f"{key}: {before.get(key)!r} -> {after.get(key)!r}" for key in sorted(before.keys() | after.keys())
               if before.get(key) != after.get(key) and not _may_change(key)]
    if changed:
        raise ConfigError(f"trainer.run_dir={cfg.trainer.run_dir!r} holds a checkpoint ({found.name}) of a run with "
                          f"another config ({saved}): {'; '.join(changed)}; resume with the saved values, or "
                          f"choose another trainer.run_dir")


def _may_change(key: str) -> bool:
    return key in RESUME_MAY_CHANGE or key.split(".", 1)[0] in RESUME_MAY_CHANGE_SECTIONS


def _flat(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def save(run_dir: str | Path, state: RunState, learner) -> Path:
    """Write the learner's DeepSpeed checkpoint and ``state`` under ``step_{state.step:06d}``."""
    path = checkpoints_dir(run_dir) / f"step_{state.step:06d}"
    path.mkdir(parents=True, exist_ok=True)
    learner.save_checkpoint(str((path / "learner").resolve()))
    tmp = path / (STATE_FILE + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(state, f)
    tmp.replace(path / STATE_FILE)
    pointer_tmp = checkpoints_dir(run_dir) / (LATEST_FILE + ".tmp")
    pointer_tmp.write_text(path.name + "\n")
    pointer_tmp.replace(checkpoints_dir(run_dir) / LATEST_FILE)
    return path


def prune(run_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` complete checkpoints (never the one ``latest`` names, nor
    an incomplete newer one a crash may have left); returns what was deleted."""
    current = latest(run_dir)
    complete = sorted(p for p in checkpoints_dir(run_dir).glob("step_*") if (p / STATE_FILE).exists())
    doomed = [p for p in complete[:-keep] if p != current] if keep > 0 else []
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def load(path: Path, learner) -> RunState:
    """Restore the learner's weights and optimiser from ``path``; returns the driver-side state."""
    with open(path / STATE_FILE, "rb") as f:
        state: RunState = pickle.load(f)
    learner.load_checkpoint(str((path / "learner").resolve()), state.policy_version)
    return state


SHARED_CHECK_FILE = ".rlsys-shared-check"  # written and removed by check_run_dir_shared


def check_run_dir_shared(run_dir: str | Path, learner) -> None:
    """Refuse, before the first step, a ``run_dir`` that a learner rank cannot see: every rank writes
    its checkpoint shard under it, so with ranks on other nodes a node-local path would only show up
    as a broken checkpoint at resume time. The driver writes a file of fresh random text into the run
    dir and every rank must read that text back (``learner.ranks_not_reading``)."""
    run_dir = Path(run_dir).absolute()
    marker, text = run_dir / SHARED_CHECK_FILE, uuid.uuid4().hex
    marker.write_text(text)
    try:
        blind = learner.ranks_not_reading(str(marker), text)
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise ConfigError(f"trainer.run_dir={str(run_dir)!r} is not the same directory for {', '.join(blind)} "
                          f"as for the driver: each learner rank writes its checkpoint shard there, so on several "
                          f"nodes run_dir must be on a filesystem every node mounts at the same path (NFS, a "
                          f"cluster volume)")


class Checkpointer:
    """Saves and restores a running loop's state: the learner group, the controller actor, the
    prompt stream, the replay stage and the batch stage."""

    def __init__(self, trainer: TrainerConfig, workers, stream, replay, batches):
        self.trainer, self.w, self.stream, self.replay, self.batches = trainer, workers, stream, replay, batches
        self.eval_before: dict = {}

    def restore(self, path: Optional[Path]) -> int:
        """Load ``path`` into every component (no-op for None); returns the number of steps done."""
        if path is None:
            return 0
        state = load(path, self.w.learner)
        self.w.controller.load_state_dict(state.controller)
        self.stream.load_state_dict(state.stream)
        self.replay.load_state_dict(state.replay)
        self.batches.load_state_dict(state.batch_buffer)
        self.eval_before = state.eval_before
        print(f"[rlsys] resumed from {path} (step {state.step}, policy version {state.policy_version})", flush=True)
        return state.step

    def maybe_save(self, steps_done: int, policy_version: int, force: bool = False) -> Optional[Path]:
        """Save when a save is due after ``steps_done`` steps (or ``force``); keeps the newest
        ``trainer.keep_checkpoints`` and deletes older ones."""
        if not (force or is_due(self.trainer, steps_done)):
            return None
        state = RunState(step=steps_done, policy_version=policy_version, controller=self.w.controller.state_dict(),
                         stream=self.stream.state_dict(), replay=self.replay.state_dict(), eval_before=self.eval_before,
                         batch_buffer=self.batches.state_dict())
        path = save(self.trainer.run_dir, state, self.w.learner)
        prune(self.trainer.run_dir, self.trainer.keep_checkpoints)
        return path
