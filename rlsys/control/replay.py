"""UEC-RL's replay buffer: a FIFO of opaque training rows with a seeded sampler (docs/algorithms.md#uec_rl,
steps 6-7).

Items are whatever the driver stores (per-sample training rows including the stored old
log-probs); the buffer never looks inside them. Must not import ray, vllm or deepspeed.
"""
from __future__ import annotations

import random
from collections import deque
from typing import Any, Iterable


class ReplayBuffer:
    """Keeps the newest ``capacity`` items (s' = uec_replay_size * P * G).

    docs/algorithms.md#checked-properties, property 15.
    """

    def __init__(self, capacity: int, seed: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity={capacity}: must be >= 0")
        self.capacity = int(capacity)
        self._items: deque = deque(maxlen=self.capacity)  # maxlen evicts the oldest first
        self._rng = random.Random(seed)

    def add(self, items: Iterable[Any]) -> None:
        self._items.extend(items)

    def __len__(self) -> int:
        return len(self._items)

    def ready(self, unit: int) -> bool:
        """Whether a replay update of at least one ``unit`` (= P*G samples) is possible."""
        return len(self._items) >= unit

    def sample_for_update(self, unit: int) -> list:
        """The whole buffer when full, else a uniform random subset of floor(len/unit)*unit items.

        Items stay in the buffer (replay does not consume them). The subset keeps FIFO order,
        oldest first. Returns [] when fewer than ``unit`` items are held.
        """
        if unit <= 0:
            raise ValueError(f"unit={unit}: must be > 0")
        n = len(self._items)
        if n == self.capacity:
            return list(self._items)
        take = (n // unit) * unit
        if take == 0:
            return []
        chosen = sorted(self._rng.sample(range(n), take))
        return [self._items[i] for i in chosen]

    def state_dict(self) -> dict:
        """Items as stored (the caller's checkpoint must be able to serialise them) and the RNG."""
        return {"capacity": self.capacity, "items": list(self._items), "rng_state": self._rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self.capacity = int(state["capacity"])
        self._items = deque(state["items"], maxlen=self.capacity)
        version, internal, gauss = state["rng_state"]  # lists after a JSON-like round trip -> tuples
        self._rng.setstate((version, tuple(internal), gauss))
