"""One KV cache shared by every request in flight on the fast decoder.

Each flight's cache is a block of rows ("slots") of one tensor per layer, so that when several
requests decode together (continuous batching), flights whose slots are neighbours attend in ONE
attention call per layer instead of one per flight: with 8 kids' pairs in flight, the per-flight
calls (240 attentions and 480 cache writes per token) made a step ~20% slower than one flight of
the same 16 rows; in one call per layer, ~6% (docs/decoding.md).

A flight that does not fit (more rows than free neighbouring slots, or a longer sequence than the
pool's capacity) keeps a cache of its own, exactly as before. Slots go back to the pool when the
flight's cache is garbage-collected, whatever ended it (done, cancelled, failed).
"""

from __future__ import annotations

import threading
import weakref

import torch

POOL_SLOTS = 32  # rows: 2 x max_rows (16), what the scheduler keeps in flight per priority level; beyond, own caches
POOL_CAPACITY = 512  # positions per row: prompt + answer


class KVPool:
    """`slots` rows x `capacity` positions of keys and values for every layer, allocated on first use."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, slots: int = POOL_SLOTS, capacity: int = POOL_CAPACITY):
        self.shape = (slots, kv_heads, capacity, head_dim)
        self.layers = layers
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self._taken = [False] * slots
        self._lock = threading.Lock()

    @property
    def slots(self) -> int:
        return self.shape[0]

    @property
    def capacity(self) -> int:
        return self.shape[2]

    def take(self, rows: int, capacity: int) -> int | None:
        """The first slot of `rows` free neighbouring slots, now taken; None if none or too long."""
        if capacity > self.capacity or rows > self.slots:
            return None
        with self._lock:
            run = 0
            for i, taken in enumerate(self._taken):
                run = 0 if taken else run + 1
                if run == rows:
                    first = i - rows + 1
                    self._taken[first : i + 1] = [True] * rows
                    if not self.keys:  # first use
                        self.keys = [torch.zeros(self.shape) for _ in range(self.layers)]
                        self.values = [torch.zeros(self.shape) for _ in range(self.layers)]
                    return first
        return None

    def give_back(self, first: int, rows: int) -> None:
        with self._lock:
            self._taken[first : first + rows] = [False] * rows

    def free(self) -> int:
        with self._lock:
            return self._taken.count(False)

    def views(self, owner, first: int, rows: int, capacity: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Keys and values of slots first.. as views (rows, kv_heads, capacity, head_dim); the slots
        are given back when `owner` is garbage-collected."""
        weakref.finalize(owner, self.give_back, first, rows)
        rows_of = slice(first, first + rows)
        return [k[rows_of, :, :capacity] for k in self.keys], [v[rows_of, :, :capacity] for v in self.values]
