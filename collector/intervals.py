"""Each gauge series' interval: the seconds since its previous point, remembered within a byte budget.

The store keeps a point that comes a minute or more after its predecessor as its own 1-minute rollup
row (`vigil.store.schema_minutes`); the interval is how it knows. A series not remembered (new, evicted,
or the process restarted) gets 0, which stores it as a dense series would be: a forgotten interval costs
disk, never an answer. Points out of order or repeated also get 0.

Two generations, as in `SeriesLimiter`: a series seen in either is known; when the current one fills
half the budget the older is dropped, so the map never holds more than the budget's worth of entries.
"""

from __future__ import annotations

ENTRY_BYTES = 120  # a dict slot with an int key and an int value, measured with tracemalloc: ~100-110
MAX_GAP_S = 2**32 - 1  # the column is UInt32


class SeriesIntervals:
    def __init__(self, max_bytes: int) -> None:
        self.per_generation = max(1, max_bytes // ENTRY_BYTES // 2)
        self.current: dict[int, int] = {}
        self.previous: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)

    def gap_s(self, series: int, time_ns: int) -> int:
        """Seconds since `series`' previous point, to the nearest, then remember the later of the two; 0 when
        unknown (or less than half a second)."""
        last = self.current.get(series)
        if last is None:
            last = self.previous.get(series)
            if len(self.current) >= self.per_generation:
                self.previous, self.current = self.current, {}
        if last is None:
            self.current[series] = time_ns
            return 0
        if time_ns <= last:  # late or repeated: the series' latest time stays
            self.current[series] = last
            return 0
        self.current[series] = time_ns
        # to the nearest second: an exporter's 60 s period arrives as 59.9996 s as often as 60.0004 s
        return min((time_ns - last + 500_000_000) // 1_000_000_000, MAX_GAP_S)
