"""UEC-RL's batch buffer (docs/algorithms.md#uec_rl, step 5): kept samples wait in a FIFO until the
learner can train on a whole multiple of ``unit`` = P*G of them.

Items are opaque (the driver stores ``rlsys.algo.batch.TrainRow``); the buffer never looks inside.
Pure Python: must not import ray, vllm or deepspeed.

- Each step's kept samples are added, then the largest multiple of ``unit`` is popped, oldest
  first; the rest (fewer than ``unit``) waits for later steps.
- [C] On overflow the oldest items are dropped (as the replay buffer does) and counted; the
  authors' buffer class was not available, only its capacity of 2*P*G.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Iterable


class BatchBuffer:
    """FIFO of at most ``capacity`` items, popped in whole multiples of ``unit``."""

    def __init__(self, capacity: int, unit: int) -> None:
        if unit <= 0:
            raise ValueError(f"unit={unit}: must be > 0")
        if capacity < unit:
            raise ValueError(f"capacity={capacity}: must be >= unit={unit}, or nothing could ever be trained")
        self.capacity, self.unit = int(capacity), int(unit)
        self._items: deque = deque()
        self.dropped_total = 0  # items evicted by overflow since the run started

    def __len__(self) -> int:
        return len(self._items)

    def add(self, items: Iterable[Any]) -> int:
        """Append ``items`` (oldest first); evicts the oldest beyond ``capacity``. Returns how many were evicted."""
        self._items.extend(items)
        dropped = max(0, len(self._items) - self.capacity)
        for _ in range(dropped):
            self._items.popleft()
        self.dropped_total += dropped
        return dropped

    def pop_trainable(self) -> list:
        """Remove and return the oldest ``floor(len / unit) * unit`` items ([] when fewer than ``unit``)."""
        take = (len(self._items) // self.unit) * self.unit
        return [self._items.popleft() for _ in range(take)]

    def state_dict(self) -> dict:
        """Items as stored (the caller's checkpoint must be able to serialise them) and the counters."""
        return {"capacity": self.capacity, "unit": self.unit, "items": list(self._items),
                "dropped_total": self.dropped_total}

    def load_state_dict(self, state: dict) -> None:
        if (int(state["capacity"]), int(state["unit"])) != (self.capacity, self.unit):
            raise ValueError(f"batch buffer state has capacity {state['capacity']} and unit {state['unit']}, "
                             f"this run {self.capacity} and {self.unit}")
        self._items = deque(state["items"])
        self.dropped_total = int(state["dropped_total"])
