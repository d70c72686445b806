"""A bounded cache of reads, by model, that keeps invalidated entries as a fallback for when MLflow is down.

An entry is *fresh* while it is younger than the TTL and its model was not invalidated since it was
fetched. A fresh entry is answered without asking MLflow; any other entry is answered only when MLflow
cannot be reached, flagged stale. Invalidation bumps the model's generation, so a read that started
before an invalidation never stores its (possibly old) answer as fresh.

The cache is used from the event loop thread only; other threads invalidate through the loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

Key = tuple[str, ...]  # (kind, model, ...)


@dataclass
class Entry:
    value: Any
    fetched_at: float
    generation: int


class ReadCache:
    def __init__(self, *, ttl_seconds: float, max_entries: int) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._generations: dict[str, int] = {}

    def generation(self, model: str) -> int:
        return self._generations.get(model, 0)

    def lookup(self, key: Key) -> tuple[Entry | None, bool]:
        """(entry or None, whether it is fresh)."""
        entry = self._entries.get(key)
        if entry is None:
            return None, False
        fresh = entry.generation == self.generation(key[1]) and time.monotonic() - entry.fetched_at < self.ttl
        return entry, fresh

    def put(self, key: Key, value: Any, *, generation: int) -> None:
        """Store `value`, read while the model was at `generation` (an older one makes it not fresh)."""
        self._entries[key] = Entry(value=value, fetched_at=time.monotonic(), generation=generation)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate_model(self, model: str) -> None:
        """Every entry of `model` stops being fresh (but stays as the stale fallback)."""
        self._generations[model] = self.generation(model) + 1

    def __len__(self) -> int:
        return len(self._entries)
