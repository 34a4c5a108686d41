"""collector.attributes: the attribute-set cache is bounded in bytes and never keeps a refused set."""

from collector.attributes import AttributeCache
from collector.convert import Limits
from tests.otlp import gauge

NOW = 1_800_000_000 * 10**9


def test_the_attribute_cache_stays_under_its_byte_bound_and_evicts_oldest_first() -> None:
    cache = AttributeCache(Limits(), capacity_bytes=20_000)
    sets = []
    for i in range(100):
        m = gauge("g", [(1.0, {"k": f"{i:04d}" + "v" * 1000})])
        sets.append(m.gauge.data_points[0].attributes)
        assert cache.get(sets[-1]) is not None
        assert cache.bytes <= 20_000
    assert 5 < len(cache) < 20, "evicts a few, does not clear wholesale"
    first = cache.get(sets[0])
    assert first is not None and first[0]["k"].startswith("0000"), "an evicted set is rebuilt on demand"


def test_a_refused_attribute_set_is_never_cached() -> None:
    cache = AttributeCache(Limits(max_value_length=100))
    m = gauge("g", [(1.0, {"k": "v" * 101}), (1.0, {"k": "fine"})])
    assert cache.get(m.gauge.data_points[0].attributes) is None
    assert len(cache) == 0 and cache.bytes == 0
    assert cache.get(m.gauge.data_points[1].attributes) is not None and len(cache) == 1
