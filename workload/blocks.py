"""KV-cache block accounting: a fixed pool of fixed-size blocks and each sequence's block table.

Pure bookkeeping, no tensors: the model reads `slots()` to know where a token's keys and values
live. The scheduler asks `can_allocate(n)` and calls `allocate`/`grow`/`free`; it never sees the
free list.
"""

from __future__ import annotations

from collections.abc import Iterable


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int = 16) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))  # pop() hands out low ids first
        self._tables: dict[int, list[int]] = {}
        self._withheld: list[int] = []  # blocks taken out of service (the kv_pressure fault)
        self._withhold_target = 0

    # -- questions -----------------------------------------------------------------------

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    @property
    def capacity(self) -> int:
        """Blocks in service: the pool less what a fault withholds."""
        return self.num_blocks - self._withhold_target

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return sum(len(t) for t in self._tables.values())

    @property
    def usage(self) -> float:
        """Share of the blocks in service that hold a sequence's tokens (vLLM's kv_cache_usage_perc)."""
        return min(1.0, self.num_used / self.capacity) if self.capacity else 1.0

    def can_allocate(self, num_blocks: int) -> bool:
        return num_blocks <= len(self._free)

    def blocks_to_grow(self, seq_id: int, num_tokens: int) -> int:
        return max(0, self.blocks_for(num_tokens) - len(self._tables.get(seq_id, ())))

    def table(self, seq_id: int) -> list[int]:
        return self._tables[seq_id]

    def slots(self, seq_id: int, positions: Iterable[int]) -> list[int]:
        """Flat cache slots (block * block_size + offset) of a sequence's token positions."""
        table, size = self._tables[seq_id], self.block_size
        return [table[p // size] * size + p % size for p in positions]

    # -- changes -------------------------------------------------------------------------

    def allocate(self, seq_id: int, num_tokens: int) -> None:
        """A new table holding `num_tokens` tokens."""
        if seq_id in self._tables:
            raise ValueError(f"sequence {seq_id} already has blocks")
        self._tables[seq_id] = []
        self.grow(seq_id, num_tokens)

    def grow(self, seq_id: int, num_tokens: int) -> None:
        """Extend a table to hold `num_tokens` tokens; the caller checked `can_allocate`."""
        needed = self.blocks_to_grow(seq_id, num_tokens)
        if needed > len(self._free):
            raise MemoryError(f"{needed} KV blocks needed, {len(self._free)} free")
        table = self._tables[seq_id]
        for _ in range(needed):
            table.append(self._free.pop())

    def free(self, seq_id: int) -> None:
        for block in self._tables.pop(seq_id, ()):
            self._release(block)

    def _release(self, block: int) -> None:
        if len(self._withheld) < self._withhold_target:
            self._withheld.append(block)
        else:
            self._free.append(block)

    def withhold(self, num_blocks: int) -> None:
        """Take `num_blocks` out of service: free ones now, the rest as sequences release theirs."""
        self._withhold_target = max(0, min(num_blocks, self.num_blocks - 1))
        while self._free and len(self._withheld) < self._withhold_target:
            self._withheld.append(self._free.pop())
        while len(self._withheld) > self._withhold_target:
            self._free.append(self._withheld.pop())

    def check(self) -> None:
        """Every block is in exactly one place (free, withheld or one table)."""
        seen = self._free + self._withheld + [b for t in self._tables.values() for b in t]
        if sorted(seen) != list(range(self.num_blocks)):
            raise AssertionError(f"block accounting broken: {len(seen)} placed of {self.num_blocks}")
