"""Series names stay within their bytes, least recently used first out, and say which groupings they know."""

from __future__ import annotations

from vigil.store.series_names import SeriesNames, entry_bytes

M = "gpu.utilization"


def names(n: int, start: int = 0) -> list[tuple[int, tuple[str, str, str]]]:
    return [(2**63 + i, (f"GPU-{i:08d}", "ml", f"host-{i // 8}")) for i in range(start, start + n)]


def test_an_entry_counts_its_strings() -> None:
    key = (M, "team", 2**63)
    small = entry_bytes(key, ("GPU-0", "ml", "n1"))
    assert small > 200
    assert entry_bytes(key, ("GPU-0", "m" * 10_000, "n1")) >= small + 10_000 - len("ml")
    assert entry_bytes(key, None) < small  # a series without a GPU holds no strings of its own


def test_names_are_kept_per_grouping_and_found_by_hash() -> None:
    cache = SeriesNames()
    assert not cache.knows(M, "team")
    cache.put(M, "team", [*names(3), (7, None)])
    assert cache.knows(M, "team") and not cache.knows(M, "host.name") and not cache.knows("other", "team")
    found = cache.get(M, "team", [2**63, 2**63 + 2, 7, 99])
    assert found == {2**63: ("GPU-00000000", "ml", "host-0"), 2**63 + 2: ("GPU-00000002", "ml", "host-0"), 7: None}
    assert cache.get(M, "host.name", [2**63]) == {}


def test_the_names_stay_within_their_bytes_and_the_least_recently_used_go_first() -> None:
    one = entry_bytes((M, "team", 2**63), names(1)[0][1])
    cache = SeriesNames(max_bytes=10 * one + one // 2)
    cache.put(M, "team", names(10))
    assert len(cache) == 10 and cache.bytes <= cache.max_bytes
    cache.get(M, "team", [2**63])  # the first is used again: the second is now the oldest
    cache.put(M, "host.name", names(1, start=100))
    assert len(cache) == 10 and cache.bytes <= cache.max_bytes
    assert cache.get(M, "team", [2**63, 2**63 + 1]).keys() == {2**63}
    cache.put(M, "host.name", names(10, start=200))  # pushes every "team" name out
    assert not cache.knows(M, "team") and cache.knows(M, "host.name")
    assert cache.bytes <= cache.max_bytes


def test_a_name_past_the_whole_bound_is_not_kept() -> None:
    cache = SeriesNames(max_bytes=100)
    cache.put(M, "team", names(1))
    assert len(cache) == 0 and cache.bytes == 0 and not cache.knows(M, "team")
