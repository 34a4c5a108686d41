from __future__ import annotations

import pytest

from alerting.notify.silence import SilenceError, SilenceStore


@pytest.mark.parametrize(
    ("matchers", "labels", "silenced"),
    [
        ([("alertname", "=", "HighErrors")], {"alertname": "HighErrors"}, True),
        ([("alertname", "!=", "HighErrors"), ("team", "=", "ml")], {"alertname": "HighErrors", "team": "ml"}, False),
        ([("host", "=~", "gpu-.*")], {"host": "gpu-3"}, True),
        ([("host", "=~", "gpu")], {"host": "gpu-3"}, False),  # anchored, as Alertmanager
        ([("host", "!~", "gpu-.*"), ("team", "=", "ml")], {"host": "cpu-1", "team": "ml"}, True),
        ([("host", "!~", "gpu-.*"), ("team", "=", "ml")], {"host": "gpu-1", "team": "ml"}, False),
        ([("team", "=", "ml")], {}, False),
    ],
)
def test_silence_matchers(matchers: list, labels: dict, silenced: bool) -> None:
    silences = SilenceStore(None)
    silences.create(matchers, 100.0, 200.0, "alice", "maintenance")
    assert bool(silences.matching(labels, 150.0)) is silenced


def test_silence_window_and_expire() -> None:
    silences = SilenceStore(None)
    s = silences.create([("host", "=", "a")], 100.0, 200.0, "alice", "")
    assert not silences.matching({"host": "a"}, 99.0) and not silences.matching({"host": "a"}, 200.0)
    assert silences.matching({"host": "a"}, 150.0)
    assert silences.expire(s.id, 150.0) is True
    assert not silences.matching({"host": "a"}, 150.0)
    assert silences.expire(s.id, 151.0) is False  # already over
    assert silences.expire("nope", 151.0) is False
    assert silences.list(151.0) == [] and silences.list(151.0, include_expired=True)[0].ends_at == 150.0


@pytest.mark.parametrize(
    ("matchers", "starts", "ends", "by", "message"),
    [
        ([], 1.0, 2.0, "a", "at least one matcher"),
        ([("host", "=~", ".*")], 1.0, 2.0, "a", "empty string"),
        ([("host", "=~", "(")], 1.0, 2.0, "a", "not an RE2 regular expression"),
        ([("host", "=~", "a" * 2000)], 1.0, 2.0, "a", "longer than"),
        ([("host", "==", "a")], 1.0, 2.0, "a", "operator"),
        ([("host", "=", "a")], 2.0, 1.0, "a", "after startsAt"),
        ([("host", "=", "a")], 1.0, 2.0, " ", "createdBy"),
    ],
)
def test_bad_silences_are_refused_with_a_reason(
    matchers: list, starts: float, ends: float, by: str, message: str
) -> None:
    with pytest.raises(SilenceError, match=message):
        SilenceStore(None).create(matchers, starts, ends, by, "")
