import pytest

from workload.blocks import BlockManager


def test_allocate_grow_free_and_slots() -> None:
    bm = BlockManager(num_blocks=8, block_size=16)
    bm.allocate(1, 17)  # 17 tokens need 2 blocks
    assert len(bm.table(1)) == 2 and bm.num_free == 6
    assert bm.blocks_to_grow(1, 32) == 0 and bm.blocks_to_grow(1, 33) == 1
    bm.grow(1, 33)
    table = bm.table(1)
    assert bm.slots(1, [0, 15, 16, 32]) == [table[0] * 16, table[0] * 16 + 15, table[1] * 16, table[2] * 16]
    assert bm.usage == pytest.approx(3 / 8)
    bm.free(1)
    assert bm.num_free == 8 and bm.usage == 0
    bm.check()


def test_cannot_take_more_than_is_free() -> None:
    bm = BlockManager(num_blocks=2, block_size=4)
    assert bm.can_allocate(2) and not bm.can_allocate(3)
    bm.allocate(1, 8)
    with pytest.raises(MemoryError):
        bm.allocate(2, 1)
    with pytest.raises(ValueError, match="already has blocks"):
        bm.allocate(1, 1)


def test_withheld_blocks_leave_service_and_come_back() -> None:
    bm = BlockManager(num_blocks=10, block_size=4)
    bm.allocate(1, 24)  # 6 blocks in use, 4 free
    bm.withhold(8)  # the 4 free now, 4 more as sequence 1 releases
    assert bm.num_free == 0 and bm.capacity == 2
    bm.free(1)
    assert bm.num_free == 2
    bm.check()
    bm.withhold(0)
    assert bm.num_free == 10 and bm.capacity == 10
    bm.check()
