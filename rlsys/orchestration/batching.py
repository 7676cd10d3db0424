"""What the learner trains on each step: the assembled batch as it is or, with UEC-RL's batch buffer
(docs/algorithms.md#uec_rl, step 5), the largest whole multiple of P*G of the samples kept so far.

Driver-side state only (checkpointed with the run); no Ray calls.
"""
from __future__ import annotations

from typing import Optional

from rlsys.algo.batch import Assembled, Trained, pad_rows
from rlsys.algo.batch_buffer import BatchBuffer
from rlsys.config import Config
from rlsys.control import controller_class
from rlsys.types import ControlDirectives


class BatchStage:
    """Pass-through without a buffer. With one, each step's kept rows join the FIFO and the learner
    gets ``floor(size / P*G) * P*G`` of them, oldest first; the rest waits for later steps.

    Buffered rows keep what assembly gave them (advantage, coefficient, temperature). Their old
    log-probs follow ``learner.old_logprob_source`` at training time: ``learner`` recomputes them
    with the weights of the step that trains the row (as the authors' code does), ``rollout`` uses
    vLLM's from sampling time; ``uec/batch_buffer_staleness_steps`` logs how many updates apart those are.
    """

    def __init__(self, buffer: Optional[BatchBuffer], use_rollout_logprobs: bool):
        self.buffer, self.use_rollout_logprobs = buffer, use_rollout_logprobs

    @classmethod
    def from_config(cls, cfg: Config) -> "BatchStage":
        ec, unit = cfg.entropy_control, cfg.data.prompts_per_step * cfg.rollout.samples_per_prompt
        on = controller_class(ec).uses_batch_buffer(ec)  # UEC-RL's, unless uec_batch_buffer=false
        return cls(BatchBuffer(2 * unit, unit) if on else None, cfg.learner.old_logprob_source == "rollout")

    def take(self, assembled: Assembled, policy_version: int) -> Trained:
        """This step's training rows; ``policy_version``: the weights they will be trained from."""
        if self.buffer is None:
            return Trained(batch=assembled.batch, rows=assembled.rows)
        dropped = self.buffer.add(assembled.rows)
        rows = tuple(self.buffer.pop_trainable())
        return Trained(batch=pad_rows(rows, range(len(rows)), policy_version, self.use_rollout_logprobs),
                       rows=rows, dropped=dropped)

    def metrics(self, assembled: Assembled, trained: Trained, directives: ControlDirectives) -> dict[str, float]:
        """Buffer size, rows trained and dropped this step; staleness: updates between sampling a
        trained row and the weights it is trained from (``trained.batch.policy_version``)."""
        out = ({"filter/dropped_overlong_positive": float(assembled.dropped_overlong_positive)}
               if directives.drop_overlong_positive else {})
        if self.buffer is None:
            return out
        out |= {"uec/batch_buffer_size": float(len(self.buffer)), "uec/batch_buffer_trained": float(len(trained.rows)),
                "uec/batch_buffer_dropped": float(trained.dropped),
                "uec/batch_buffer_dropped_total": float(self.buffer.dropped_total)}
        if trained.rows:
            out["uec/batch_buffer_staleness_steps"] = (
                sum(trained.batch.policy_version - r.sample.policy_version for r in trained.rows) / len(trained.rows))
        return out

    def state_dict(self) -> dict:
        return {} if self.buffer is None else {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if (self.buffer is None) != (not state):
            raise ValueError("checkpoint and config disagree on entropy_control.uec_batch_buffer")
        if self.buffer is not None:
            self.buffer.load_state_dict(state["buffer"])
