"""The optional TensorBoard sink (``trainer.tensorboard``): every logged scalar, train and eval rows,
as a TensorBoard scalar in ``run_dir/tensorboard``. Needs the ``tensorboard`` package (the
``tensorboard`` extra); must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

from pathlib import Path


class TensorBoardSink:
    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
