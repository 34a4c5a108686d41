"""collector.limits: the series limiter bounds names and series, not only series per metric."""

from collector.convert import SeriesLimiter

NOW = 1_800_000_000 * 10**9


def test_the_series_limiter_caps_distinct_metric_names_and_total_series() -> None:
    limiter = SeriesLimiter(100, max_metric_names=2, max_series_total=3)
    assert limiter.admit("a", 1) and limiter.admit("b", 1)
    assert not limiter.admit("c", 1), "a third name is refused"
    assert len(limiter.current) == 2
    assert limiter.admit("a", 2)
    assert not limiter.admit("b", 2), "three series live in all"
    limiter.roll()
    assert limiter.admit("a", 1), "live in the previous generation"
    assert not limiter.admit("c", 1), "a and b are still live names"
    limiter.roll()
    limiter.roll()
    assert limiter.admit("c", 1), "old names aged out"
