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


def test_an_alert_muted_while_it_fired_stays_muted_after_its_source_resolves_until_it_resolves() -> None:
    inhibitor = Inhibitor([RULE])
    burn = alert("HighErrors", host="a", at=100.0)
    inhibitor.observe([alert("NodeDown", host="a"), burn])
    assert inhibitor.mutes(burn)
    inhibitor.observe([alert("NodeDown", host="a", resolved_at=120.0), burn])  # the cause is fixed first
    assert inhibitor.mutes(burn)  # its consequence, still firing, does not page now
    inhibitor.observe([alert("HighErrors", host="a", at=100.0, resolved_at=130.0)])
    again = alert("HighErrors", host="a", at=140.0)
    inhibitor.observe([again])
    assert not inhibitor.mutes(again)  # firing again with no source: a new failure pages


def test_an_alert_that_fired_before_its_source_is_muted_once_the_source_fires() -> None:
    inhibitor = Inhibitor([RULE])
    burn = alert("HighErrors", host="a")
    inhibitor.observe([burn])
    assert not inhibitor.mutes(burn)
    inhibitor.observe([burn, alert("NodeDown", host="a")])
    assert inhibitor.mutes(burn)
