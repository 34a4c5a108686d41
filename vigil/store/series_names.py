"""What each series is, by its hash: its GPU, its group under a grouping key and its host, remembered.

A series' hash is `cityHash64(ResourceAttributes, Attributes)` (`schema_history.SERIES_HASH`), so what
a hash names never changes: the GPU, group and host read from its maps once stay true for good. That
lets a GPU-hours or top-GPUs question read its per-series totals alone and name them from here, where
it read a series lookup beside them (`usage_hourly.series`): one query on the store's cores instead of
two. Only series not seen before are looked up, by their hashes.

Nothing here can go stale, so nothing is ever checked; the cache is per store, least recently used
first out, and bounded in bytes by what its keys and values hold in Python (`entry_bytes`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

from vigil.store.memo import ByteLru, PerStore

MAX_BYTES = 16 * 1024 * 1024  # ~38 k names at ~440 bytes each: a 4,096-series fleet under nine groupings
Key = tuple[str, str, int]  # (metric, grouping key, series hash)
Name = tuple[str, str, str] | None  # (uuid, group, host); None: a series without `gpu.uuid`, never in an answer


def entry_bytes(key: Key, name: Name) -> int:
    """What one entry holds in Python, its strings counted as if not shared."""
    size = sys.getsizeof(key) + sum(map(sys.getsizeof, key)) + sys.getsizeof(name)
    return size + (sum(map(sys.getsizeof, name)) if name is not None else 0)


class SeriesNames(ByteLru[Key, Name]):
    """Series names by (metric, grouping key, hash), at most `max_bytes` in all."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        super().__init__(max_bytes)
        self._groupings: dict[tuple[str, str], int] = {}  # entries per (metric, grouping key)

    def knows(self, metric: str, group_by: str) -> bool:
        """Whether any series is named under this grouping yet (else a question reads its lookup anyway)."""
        with self._lock:
            return self._groupings.get((metric, group_by), 0) > 0

    def get(self, metric: str, group_by: str, hashes: Iterable[int]) -> dict[int, Name]:
        """The names known of `hashes`; the others are missing from the answer."""
        with self._lock:
            return {h: found[0] for h in hashes if (found := self._get((metric, group_by, h))) is not None}

    def put(self, metric: str, group_by: str, names: Sequence[tuple[int, Name]]) -> None:
        """Remember each (hash, name); the least recently used go first past `max_bytes`."""
        with self._lock:
            for h, name in names:
                key = (metric, group_by, h)
                if self._get(key) is None and self._put(key, name, entry_bytes(key, name)):
                    self._groupings[(metric, group_by)] = self._groupings.get((metric, group_by), 0) + 1

    def _dropped(self, key: Key) -> None:
        grouping = key[:2]
        self._groupings[grouping] -= 1
        if not self._groupings[grouping]:
            del self._groupings[grouping]  # a grouping asked once (any attribute name) leaves nothing behind


names_of: PerStore[SeriesNames] = PerStore(SeriesNames)
