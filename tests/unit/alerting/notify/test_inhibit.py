from __future__ import annotations

import pytest

from alerting.config import InhibitRule
from alerting.matchers import Matcher
from alerting.notify.inhibit import Inhibitor
from tests.unit.alerting.notify.helpers import alert

RULE = InhibitRule(
    source_matchers=(Matcher.parse("alertname=NodeDown"),),
    target_matchers=(Matcher.parse("severity=~page|ticket"),),
    equal=("host",),
)


@pytest.mark.parametrize(
    ("sources", "target", "muted"),
    [
        ([alert("NodeDown", host="a")], alert("HighErrors", host="a"), True),
        ([alert("NodeDown", host="b")], alert("HighErrors", host="a"), False),  # equal labels differ
        ([alert("NodeDown", host="a", resolved_at=5.0)], alert("HighErrors", host="a"), False),  # source resolved
        ([alert("Other", host="a")], alert("HighErrors", host="a"), False),  # not a source
        ([alert("NodeDown")], alert("HighErrors"), True),  # missing equals missing
        ([alert("NodeDown", host="a")], alert("NodeDown", host="a"), False),  # never inhibits itself
        ([], alert("HighErrors", host="a"), False),
    ],
)
def test_inhibition(sources: list, target: object, muted: bool) -> None:
    inhibitor = Inhibitor([RULE])
    inhibitor.observe([alert("NodeDown", host="a")] if any(s.resolved for s in sources) else [])
    inhibitor.observe(sources)
    assert inhibitor.mutes(target) is muted  # type: ignore[arg-type]
