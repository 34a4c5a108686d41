"""Each gauge series' interval as the collector records it (`IntervalSeconds`), and the map's byte bound."""

from collector.convert import GAUGE, Converter, Limits
from collector.intervals import ENTRY_BYTES, SeriesIntervals
from tests.otlp import gauge, request_with

NOW = 1_800_000_000 * 10**9
S = 10**9


def _intervals(converter: Converter, ts: int, points: list[tuple[float, dict[str, str]]]) -> list[int]:
    req = request_with([gauge("gpu.utilization", points, ts=ts)], {"service.name": "agent", "host.name": "n1"})
    return converter.convert(req, NOW + 3600 * S).tables[GAUGE].column("IntervalSeconds")


def test_a_series_interval_is_the_seconds_since_its_previous_point_in_any_earlier_request() -> None:
    c = Converter(Limits())
    a, b = {"gpu.uuid": "GPU-a"}, {"gpu.uuid": "GPU-b"}
    assert _intervals(c, NOW, [(1.0, a), (2.0, b)]) == [0, 0]  # unknown: stored as a dense series is
    assert _intervals(c, NOW + 60 * S, [(1.0, a)]) == [60]
    assert _intervals(c, NOW + 61 * S, [(1.0, a), (3.0, b)]) == [1, 61]  # each series its own
    assert _intervals(c, NOW + 50 * S, [(1.0, a)]) == [0]  # late: 0, and the latest time stays
    assert _intervals(c, NOW + 121 * S, [(1.0, a)]) == [60]
    other = request_with([gauge("gpu.utilization", [(1.0, a)], ts=NOW + 200 * S)], {"service.name": "other"})
    assert c.convert(other, NOW + 3600 * S).tables[GAUGE].column("IntervalSeconds") == [0]  # another resource


def test_the_map_holds_at_most_its_budget_and_forgets_the_oldest_generation() -> None:
    intervals = SeriesIntervals(max_bytes=10 * ENTRY_BYTES)  # 5 series per generation
    for series in range(100):
        intervals.gap_s(series, NOW)
        assert len(intervals) <= 10
    assert intervals.gap_s(99, NOW + 60 * S) == 60  # recent: still known
    assert intervals.gap_s(0, NOW + 60 * S) == 0  # long evicted: unknown again


def test_an_interval_is_rounded_to_the_nearest_second_so_a_jittery_minute_is_a_minute() -> None:
    intervals = SeriesIntervals(max_bytes=10 * ENTRY_BYTES)
    t = NOW
    assert intervals.gap_s(1, t) == 0
    for gap_ns, want in ((59_999_600_000, 60), (60_000_400_000, 60), (999_900_000, 1), (400_000_000, 0)):
        t += gap_ns
        assert intervals.gap_s(1, t) == want
