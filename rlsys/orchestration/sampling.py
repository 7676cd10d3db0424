"""Sampling stages around the rollout and reward groups: the regular pass with DAPO dynamic
sampling (drop groups with p in {0, 1} and refill, or report exhaustion) and UEC-RL's replay
stabiliser (admit high-advantage samples, replay them every f steps with their stored log-probs).
"""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional

import torch

from rlsys.algo.batch import Trained, pad_rows
from rlsys.algo.shaping import informative_groups, replay_admit_mask
from rlsys.config import RolloutConfig
from rlsys.control.replay import ReplayBuffer
from rlsys.orchestration.stages import SeedScope, concat_scored, regular_requests
from rlsys.types import ControlDirectives, LearnerStats, PromptBatch, ScoredBatch


def select_prompts(scored: ScoredBatch, keep_ids: set[str]) -> ScoredBatch:
    """The part of a scored batch that belongs to the prompts in ``keep_ids``."""
    pairs = [(s, r) for s, r in zip(scored.rollout.samples, scored.results) if s.prompt_id in keep_ids]
    rollout = dataclasses.replace(scored.rollout, samples=tuple(s for s, _ in pairs),
                                  prompts=tuple(p for p in scored.rollout.prompts if p.prompt_id in keep_ids))
    return dataclasses.replace(scored, rollout=rollout, results=tuple(r for _, r in pairs),
                               groups=tuple(g for g in scored.groups if g.prompt_id in keep_ids))


class RegularSampler:
    """Draws P prompts, samples G responses each (``samples_per_prompt`` when given: HORA's probe size)
    and grades them.

    With ``dynamic_sampling`` groups whose samples are all right or all wrong are dropped and new
    prompts are drawn until P informative groups are collected or ``max_rounds`` rounds were spent
    (``sampler/dynamic_exhausted`` = 1 then, and the step trains on what it has).
    """

    def __init__(self, stream, rollout, reward, cfg: RolloutConfig, dynamic: tuple[bool, int] = (False, 1),
                 samples_per_prompt: Optional[int] = None):
        self.stream, self.rollout, self.reward = stream, rollout, reward
        self.G = cfg.samples_per_prompt if samples_per_prompt is None else samples_per_prompt  # HORA: n_probe
        self.temperature, self.seed = cfg.temperature, cfg.seed
        self.dynamic, self.max_rounds = dynamic

    def sample(self, policy_version: int, step: int) -> tuple[PromptBatch, ScoredBatch, dict[str, float]]:
        kept: Optional[ScoredBatch] = None
        want = self.stream.prompts_per_step
        dropped = rounds = 0
        while rounds < (self.max_rounds if self.dynamic else 1):
            rounds += 1
            prompts = self.stream.next_batch(policy_version)
            scope = SeedScope(self.seed, "regular", step, rounds)
            scored = self.reward.score(self.rollout.generate(
                regular_requests(prompts, self.G, self.temperature, scope), policy_version))
            if not self.dynamic:
                return prompts, scored, {}
            n_correct_P = torch.tensor([g.n_correct for g in scored.groups])
            ok_P = informative_groups(n_correct_P, torch.tensor([g.n for g in scored.groups]))
            have = 0 if kept is None else len(kept.groups)
            ids = [g.prompt_id for g, ok in zip(scored.groups, ok_P.tolist()) if ok][:want - have]
            dropped += len(scored.groups) - int(ok_P.sum())
            kept = concat_scored(kept, select_prompts(scored, set(ids)))
            if len(kept.groups) >= want:
                break
        metrics = {"sampler/dynamic_rounds": float(rounds), "sampler/dynamic_dropped_groups": float(dropped),
                   "sampler/dynamic_exhausted": float(len(kept.groups) < want)}
        return PromptBatch(prompts=kept.rollout.prompts, policy_version=policy_version), kept, metrics


class SampleAhead:
    """One-step-off sampling (``trainer.async_steps=1``): the regular pass of step k+1 runs in a thread
    of the driver while step k trains, on the weights the engines serve before step k's update.

    ``take(version, step)`` returns step ``step``'s regular pass, the one started ahead or, when none
    was (synchronous mode, the first step, after a resume), sampled now. ``start(version, step)`` starts
    it ahead; ``wait()`` returns once it is done and re-raises its error, so the weights can change.
    As the prompt stream a checkpoint records, it reports the stream as it was before a pass started
    ahead: a resumed run samples that step again (on the newer weights) instead of skipping its prompts.
    """

    def __init__(self, sampler: RegularSampler, stream, enabled: bool):
        self.sampler, self.stream, self.enabled = sampler, stream, enabled
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="rlsys-sample-ahead") if enabled else None
        self._ahead: Optional[tuple[int, Future]] = None  # (step, its pass in flight or done)
        self._stream_before: dict = {}

    def take(self, version: int, step: int) -> tuple[PromptBatch, ScoredBatch, dict[str, float]]:
        if self._ahead is None:
            return self.sampler.sample(version, step)
        ahead_step, future = self._ahead
        self._ahead = None
        if ahead_step != step:
            raise RuntimeError(f"the pass sampled ahead is step {ahead_step}'s, step {step} asked for its own")
        return future.result()

    def start(self, version: int, step: int) -> None:
        """Start step ``step``'s regular pass ahead on the engines' current weights (``version``); a no-op
        when sampling is synchronous."""
        if not self.enabled:
            return
        if self._ahead is not None:
            raise RuntimeError(f"step {self._ahead[0]}'s pass is already ahead; trainer.async_steps=1 allows one")
        self._stream_before = self.stream.state_dict()
        self._ahead = (step, self._pool.submit(self.sampler.sample, version, step))

    def wait(self) -> float:
        """Block until the pass started ahead is done (its result stays for ``take``); seconds waited."""
        if self._ahead is None:
            return 0.0
        start = time.perf_counter()
        self._ahead[1].exception()
        return time.perf_counter() - start

    def state_dict(self) -> dict:
        return self._stream_before if self._ahead is not None else self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._ahead = None
        self.stream.load_state_dict(state)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class ReplayStage:
    """UEC-RL stabiliser: FIFO of admitted samples, replayed as an extra learner update every f steps.

    Replayed rows use stale old log-probs, so the PPO ratio is taken against an older policy and
    clipping bounds how far replay moves the policy (docs/algorithms.md#uec_rl): vLLM's, from
    sampling time, or with ``directives.replay_learner_logprobs`` (code-compat) the learner's from
    the update that first trained the row. ``replay/staleness_steps`` counts the updates between
    sampling and the weights the replay update starts from (this step's regular update included).
    """

    def __init__(self, capacity: int, unit: int, seed: int):
        self.buffer = ReplayBuffer(capacity, seed)
        self.unit = unit
        self.updates = 0
        self.last_staleness = 0.0

    def admit(self, trained: Trained, stats: Optional[LearnerStats], directives: ControlDirectives) -> int:
        """Rows of this step's trained batch that pass the admission rule (none if nothing was trained)."""
        if directives.replay_admit_rule.kind == "none" or self.buffer.capacity == 0 or stats is None:
            return 0
        mask_B = replay_admit_mask(trained.batch.adv_B, directives.replay_admit_rule)
        learner_logp = dict(zip(stats.sample_index, stats.old_logp_per_sample))
        rows = [dataclasses.replace(row, old_logp=learner_logp[i]) if directives.replay_learner_logprobs else row
                for row, i, m in zip(trained.rows, trained.batch.sample_index_B.tolist(), mask_B.tolist()) if m]
        self.buffer.add(rows)
        return len(rows)

    def maybe_replay(self, learner, directives: ControlDirectives) -> Optional[LearnerStats]:
        """On a due step with >= P*G rows held, one learner update on the replayed rows (also when
        this step's regular batch was empty)."""
        if not (directives.replay_now and self.buffer.ready(self.unit)):
            return None
        rows = self.buffer.sample_for_update(self.unit)
        version = learner.policy_version  # the weights replay updates: after this step's regular update
        batch = pad_rows(rows, range(len(rows)), version, use_rollout_logprobs=True)
        self.updates += 1
        self.last_staleness = sum(version - r.sample.policy_version for r in rows) / len(rows)
        return learner.train_step(dataclasses.replace(batch, is_replay=True))

    def state_dict(self) -> dict:
        return {"buffer": self.buffer.state_dict(), "updates": self.updates, "last_staleness": self.last_staleness}

    def load_state_dict(self, state: dict) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.updates, self.last_staleness = int(state["updates"]), float(state["last_staleness"])

    def metrics(self, admitted: int, replayed: Optional[LearnerStats]) -> dict[str, float]:
        out = {"replay/buffer_size": float(len(self.buffer)), "replay/admitted": float(admitted),
               "replay/updates": float(self.updates)}
        if replayed is not None:
            out |= {"replay/staleness_steps": self.last_staleness,
                    "replay/loss": replayed.scalars.get("learner/loss", float("nan"))}
        return out
