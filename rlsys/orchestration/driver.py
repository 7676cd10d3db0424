"""The driver: builds the worker groups and runs the training loop, one step in algorithm order.

prompts -> rollout -> verify -> entropy control -> (exploration pass) -> batch -> learn ->
controller update -> weight sync -> log. Every feature is a component or a stage argument.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rlsys.algo.batch import AdvantageSpec, assemble
from rlsys.algo.loss import LossSpec
from rlsys.config import Config, overlong_window
from rlsys.control import controller_class
from rlsys.types import LearnerStats
from rlsys.metrics.compute import (advantage_metrics, coef_metrics, entropy_metrics, filter_metrics, hora_metrics,
                                   is_correct, reward_metrics, rollout_metrics, sampler_metrics)
from rlsys.metrics.logger import MetricsLogger
from rlsys.metrics.plots import write_plots
from rlsys.metrics.tensorboard import TensorBoardSink
from rlsys.models.resolve import write_hf_model
from rlsys.orchestration import checkpoint, cluster
from rlsys.orchestration.actors import ControllerClient, LearnerGroup, RewardClient, RolloutGroup, start_groups
from rlsys.orchestration.preflight import RunPlan, check_run
from rlsys.orchestration.ray_metrics import RayMetricsSink
from rlsys.orchestration.batching import BatchStage
from rlsys.orchestration.sampling import RegularSampler, ReplayStage, SampleAhead
from rlsys.orchestration.stages import (SeedScope, difficulty_accuracy, eval_metrics, eval_requests,
                                        explore_requests, merge_scored, prompt_stats)


@dataclass
class Workers:
    rollout: RolloutGroup
    reward: RewardClient
    learner: LearnerGroup
    controller: ControllerClient

    def shutdown(self) -> None:
        """Stop every role, each even if another's shutdown fails (e.g. an actor that died)."""
        errors = []
        for part in (self.rollout, self.learner, self.reward, self.controller):
            try:
                part.shutdown()
            except Exception as err:  # noqa: BLE001 - reported below, after the other roles stopped
                errors.append(f"{type(part).__name__}: {err}")
        if errors:
            print("[rlsys] shutdown: " + "; ".join(errors), flush=True)

    def __post_init__(self) -> None:
        self.mark_restarts()

    def mark_restarts(self) -> None:
        """Count actor restarts from now on (the groups may have served an earlier run)."""
        self._restarts0 = (self.rollout.restarter.restarts, self.reward.restarter.restarts)

    def restart_metrics(self) -> dict[str, float]:
        """Crashed actors Ray restarted (and rlsys re-synced) since ``mark_restarts``, per role."""
        return {"rollout/actor_restarts": float(self.rollout.restarter.restarts - self._restarts0[0]),
                "reward/actor_restarts": float(self.reward.restarter.restarts - self._restarts0[1])}


def loss_spec(cfg: Config) -> LossSpec:
    a = cfg.algo
    return LossSpec(eps_low=a.eps_low, eps_high=a.eps_high, dual_clip_c=a.dual_clip_c, ref_kl_coef=a.ref_kl_coef,
                    agg_mode=a.loss_agg, const_len=a.seq_sum_const_len or cfg.rollout.max_new_tokens,
                    clip_cov_ratio=a.clip_cov_ratio, clip_cov_lb=a.clip_cov_lb, clip_cov_ub=a.clip_cov_ub,
                    kl_cov_ratio=a.kl_cov_ratio, kl_cov_coef=a.kl_cov_coef)


def advantage_spec(cfg: Config) -> AdvantageSpec:
    a = cfg.algo
    L = cfg.rollout.max_new_tokens
    return AdvantageSpec(mode=a.advantage, ddof=a.adv_std_ddof, beta_pos=a.asym_beta_pos, beta_neg=a.asym_beta_neg,
                         threshold=a.asym_threshold, nonbinary=a.asym_nonbinary, max_new_tokens=L,
                         overlong_cache_len=overlong_window(L, a.overlong_cache_len, a.overlong_cache_frac))


def start_workers(cfg: Config, model_path: str) -> Workers:
    cluster.check_resources(cfg)
    rollout, reward, learner, controller = start_groups(cfg, model_path, loss_spec(cfg))  # all roles at once
    return Workers(rollout=rollout, reward=reward, learner=learner, controller=controller)


def evaluate(w: Workers, prompts, cfg: Config, version: int, step: int) -> dict[str, float]:
    """pass@1/pass@k on the held-out prompts, sampled with the seeds of evaluation ``step``."""
    k, temp, scope = cfg.trainer.eval_samples, cfg.trainer.eval_temperature, SeedScope(cfg.rollout.seed, "eval", step)
    scored = w.reward.score(w.rollout.generate(eval_requests(prompts, k, temp, scope), version))
    return eval_metrics(scored, k, temp) | difficulty_accuracy(scored)


def train(cfg: Config) -> dict:
    """Check everything that needs no cluster (``preflight.check_run``: nothing written, no Ray), then
    start (or join) the cluster and the actors and run the loop; returns the run summary."""
    plan = check_run(cfg)
    return start_run(cfg, plan)


def start_run(cfg: Config, plan: RunPlan) -> dict:
    """Start (or join) the cluster, check it can host the actors, write the resolved config, start
    the actors and run the loop."""
    where = cluster.connect(cfg)
    cluster.check_resources(cfg)  # before config.yaml: a cluster too small leaves the run dir as it was
    cfg.write(Path(cfg.trainer.run_dir) / "config.yaml")
    print(f"[rlsys] {where}; model {plan.model_path}; algo {cfg.algo.name}; starting actors ...", flush=True)
    w = start_workers(cfg, plan.model_path)
    try:
        return run_loop(cfg, w, plan.stream, plan.eval_prompts, plan.resume_from)
    finally:
        w.shutdown()


class RunStopped(Exception):
    """The run stopped early on SIGINT/SIGTERM, after saving a checkpoint; ``exit_code`` is 128 + signal."""

    def __init__(self, signal_name: str, exit_code: int, steps_done: int):
        super().__init__(f"stopped by {signal_name} after step {steps_done - 1}")
        self.signal_name, self.exit_code, self.steps_done = signal_name, exit_code, steps_done


class StopOnSignal:
    """SIGINT/SIGTERM ask the loop to stop at the next step boundary (checkpoint, then a clean
    shutdown); a second signal stops at once. Handlers are installed on the main thread only."""

    def __init__(self):
        self.signum: Optional[int] = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping now")
        self.signum = signum
        print(f"[rlsys] {signal.Signals(signum).name}: finishing this step, then saving a checkpoint and "
              f"stopping (send it again to stop at once)", flush=True)

    def raise_if_stopped(self, steps_done: int) -> None:
        if self.signum is not None:
            raise RunStopped(signal.Signals(self.signum).name, 128 + self.signum, steps_done)


class NonFiniteGuard:
    """Counts steps that logged a NaN/inf metric; past ``max_steps`` of them the run stops (after a
    checkpoint) naming the metrics, instead of training on."""

    def __init__(self, max_steps: int):
        self.max_steps, self.steps, self.last = max_steps, 0, ("", [])

    def record(self, step: int, keys: list[str]) -> None:
        if keys:
            self.steps += 1
            self.last = (step, keys)

    @property
    def exceeded(self) -> bool:
        return self.steps > self.max_steps

    def raise_if_exceeded(self) -> None:
        if self.exceeded:
            step, keys = self.last
            raise FloatingPointError(f"{self.steps} steps logged NaN/inf metrics (trainer.max_nonfinite_steps="
                                     f"{self.max_steps}); last at step {step}: {', '.join(keys)}")


def run_loop(cfg: Config, w: Workers, stream, eval_prompts, resume_from: Optional[Path] = None) -> dict:
    """The training loop on running workers, from scratch or from the checkpoint ``resume_from``.
    Writes metrics.jsonl, checkpoints (trainer.save_every) and summary.json to the run dir."""
    run_dir = Path(cfg.trainer.run_dir)
    cfg.write(run_dir / "config.yaml")
    spec = advantage_spec(cfg)
    sampler = RegularSampler(stream, w.rollout, w.reward, cfg.rollout,
                             (cfg.algo.dynamic_sampling, cfg.algo.dynamic_sampling_max_rounds),
                             regular_samples_per_prompt(cfg))
    ahead = SampleAhead(sampler, stream, enabled=cfg.trainer.async_steps > 0)  # one-step-off: sample k+1 while k trains
    replay = ReplayStage(*replay_sizes(cfg), seed=cfg.trainer.seed)
    batches = BatchStage.from_config(cfg)
    use_rollout_logp = cfg.learner.old_logprob_source == "rollout"
    saver = checkpoint.Checkpointer(cfg.trainer, w, ahead, replay, batches)  # the stream as of before a pass ahead
    checkpoint.check_run_dir_shared(run_dir, w.learner)  # before any step or restore: every rank writes here
    start = saver.restore(resume_from)
    w.mark_restarts()
    sinks = [RayMetricsSink(run=run_dir.name)] + ([TensorBoardSink(run_dir / "tensorboard")] if cfg.trainer.tensorboard else [])
    logger = MetricsLogger(run_dir / "metrics.jsonl", sinks=sinks,
                           resume_step=start if resume_from is not None else None,
                           total_steps=cfg.trainer.total_steps)
    version = w.learner.align_rollout(w.rollout)
    if not saver.eval_before:
        saver.eval_before = evaluate(w, eval_prompts, cfg, version, 0)
        logger.log_eval(0, saver.eval_before)
    nonfinite = NonFiniteGuard(cfg.trainer.max_nonfinite_steps)
    with StopOnSignal() as stop, contextlib.closing(ahead):
        for step in range(start, cfg.trainer.total_steps):
            t0 = time.perf_counter()
            prompts, scored, sampler_info = ahead.take(version, step)
            staleness = check_staleness(version, scored.policy_version, cfg.trainer.async_steps)
            directives = w.controller.observe(prompt_stats(scored), scored.policy_version)
            explore = explore_pass(w, prompts, directives, version, SeedScope(cfg.rollout.seed, "explore", step))
            scored = merge_scored(scored, explore)
            t1 = time.perf_counter()
            assembled = assemble(scored, directives, spec, use_rollout_logp)
            trained = batches.take(assembled, version)
            if step + 1 < cfg.trainer.total_steps:
                ahead.start(version, step + 1)  # async: step k+1's regular pass on the weights before this update
            stats = learn(w, trained)  # None when nothing is trained (filtered out, or left in the buffer)
            admitted = replay.admit(trained, stats, directives)
            replayed = replay.maybe_replay(w.learner, directives)  # also on a step without a regular update
            waited = ahead.wait()  # the pass ahead is done before the weights change
            t2 = time.perf_counter()
            updated = stats is not None or replayed is not None
            version, sync = w.learner.push_weights(w.rollout) if updated else (version, {})
            t3 = time.perf_counter()
            timing = {"perf/step_seconds": t3 - t0, "perf/rollout_seconds": scored.rollout.generate_seconds,
                      "perf/reward_seconds": scored.grade_seconds, "perf/learner_step_seconds": t2 - t1,
                      "perf/sync_seconds": t3 - t2} | sync
            if cfg.trainer.async_steps:
                timing |= {"async/staleness_steps": float(staleness), "async/wait_seconds": waited}
            bad = logger.log(step, step_metrics(scored, assembled, directives, stats, trained) | sampler_info | timing
                             | batches.metrics(assembled, trained, directives)
                             | sampler_metrics(directives, explore) | hora_metrics(directives, scored.groups)
                             | replay.metrics(admitted, replayed)
                             | w.restart_metrics())
            nonfinite.record(step, bad)
            if cfg.trainer.eval_every and (step + 1) % cfg.trainer.eval_every == 0 and step + 1 < cfg.trainer.total_steps:
                logger.log_eval(step + 1, evaluate(w, eval_prompts, cfg, version, step + 1))
            saver.maybe_save(step + 1, version, force=stop.signum is not None or nonfinite.exceeded)
            if stop.signum is not None or nonfinite.exceeded:
                logger.close()
                stop.raise_if_stopped(step + 1)
                nonfinite.raise_if_exceeded()
    after = evaluate(w, eval_prompts, cfg, version, cfg.trainer.total_steps)
    logger.log_eval(cfg.trainer.total_steps, after)
    logger.close()
    save_final_model(w, run_dir)
    summary = {"policy_version": version, "rollout_versions": w.rollout.policy_versions(),
               "eval_before": saver.eval_before, "eval_after": after, "controller_state": w.controller.state_dict()}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    write_run_plots(run_dir)
    return summary


def write_run_plots(run_dir: Path) -> None:
    """``rlsys plot`` at the end of the run; the run's files are all written, so a failure is reported, not raised."""
    try:
        paths = write_plots(run_dir)
    except Exception as err:  # noqa: BLE001 - the run succeeded; `rlsys plot RUN_DIR` can redo this
        print(f"[rlsys] plots not written ({type(err).__name__}: {err}); run `rlsys plot {run_dir}`", flush=True)
        return
    print(f"[rlsys] plots: {', '.join(str(p) for p in paths)}", flush=True)


def explore_pass(w: Workers, prompts, directives, version: int, scope: SeedScope):
    """The second sampling pass: the extra samples the controller named (UEC-RL's at T', HORA's allocation)."""
    extra = explore_requests(prompts, directives, scope)
    return w.reward.score(w.rollout.generate(extra, version)) if extra else None


def learn(w: Workers, trained) -> Optional[LearnerStats]:
    """One learner update on the step's trained rows, reported to the controller; None if there are none."""
    if trained.batch.batch_size == 0:
        return None
    prompt_ids = {i: r.sample.prompt_id for i, r in trained.rows_by_index().items()}
    stats = w.learner.train_step(trained.batch)
    stats = dataclasses.replace(stats, prompt_id_per_sample=tuple(prompt_ids[i] for i in stats.sample_index))
    w.controller.record_learner_stats(stats)
    return stats


def check_staleness(learner_version: int, sampled_version: int, async_steps: int) -> int:
    """Updates between the weights a batch was sampled with and the learner's now; more than
    ``trainer.async_steps`` (0 when synchronous) is a broken pipeline, not a setting."""
    staleness = learner_version - sampled_version
    if not 0 <= staleness <= async_steps:
        raise RuntimeError(f"a batch sampled at policy version {sampled_version} reached the learner at version "
                           f"{learner_version}: {staleness} updates behind, trainer.async_steps={async_steps} allows "
                           f"0..{async_steps}")
    return staleness


def regular_samples_per_prompt(cfg: Config) -> int:
    """Responses per prompt of the regular pass, as the controller's class says: G, or HORA's probe size."""
    return controller_class(cfg.entropy_control).regular_samples_per_prompt(cfg.entropy_control,
                                                                            cfg.rollout.samples_per_prompt)


def replay_sizes(cfg: Config) -> tuple[int, int]:
    """(capacity s', unit P*G) of the replay buffer, as the controller's class says (0: no replay, all but UEC-RL)."""
    unit = cfg.data.prompts_per_step * cfg.rollout.samples_per_prompt
    return controller_class(cfg.entropy_control).replay_capacity(cfg.entropy_control, unit), unit


def save_final_model(w: Workers, run_dir: Path) -> None:
    """The trained weights as a Hugging Face model dir (``run_dir/final``), usable by ``rlsys eval``."""
    import ray

    write_hf_model(ray.get(w.learner.full_state_dict_ref()), w.learner.model_path, run_dir / "final")


def step_metrics(scored, assembled, directives, stats: Optional[LearnerStats], trained) -> dict[str, float]:
    """This step's sampling, advantages and filters; the learner's statistics of the ``trained`` rows
    (with UEC-RL's batch buffer, these may have been sampled in earlier steps)."""
    if stats is None:  # nothing to train on (all filtered out, or waiting in the batch buffer)
        return (reward_metrics(scored) | rollout_metrics(scored) | coef_metrics(directives)
                | filter_metrics(scored.rollout.samples, assembled.kept_B) | {"filter/empty_batch": 1.0})
    rows = trained.rows_by_index()
    rs = [rows[i] for i in stats.sample_index]
    return (reward_metrics(scored) | rollout_metrics(scored) | advantage_metrics(assembled.adv_B, assembled.advantages)
            | coef_metrics(directives) | stats.scalars | filter_metrics(scored.rollout.samples, assembled.kept_B)
            | {"entropy/bonus_term": -stats.scalars.get("learner/loss_entropy", 0.0)}
            | entropy_metrics(stats.entropy_token_mean_per_sample, stats.num_tokens_per_sample,
                              [r.group_accuracy for r in rs], [is_correct(r.reward) for r in rs],
                              [r.sample.prompt_id for r in rs]))

