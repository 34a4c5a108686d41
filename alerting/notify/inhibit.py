"""Stage 3, inhibit: a firing alert matching a rule's source mutes the alerts matching its target
that carry the same values of the rule's `equal` labels (a missing label equals a missing label),
as Alertmanager's inhibit/. An alert never inhibits itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from alerting.config import InhibitRule
from alerting.matchers import matches_all
from alerting.model import Alert


class Inhibitor:
    """Knows every firing alert (all receivers'), updated as the evaluator hands them in."""

    def __init__(self, rules: Sequence[InhibitRule]) -> None:
        self.rules = tuple(rules)
        self._firing: dict[str, Alert] = {}

    def observe(self, alerts: Sequence[Alert]) -> None:
        if not self.rules:
            return
        for alert in alerts:
            if alert.resolved:
                self._firing.pop(alert.fingerprint, None)
            else:
                self._firing[alert.fingerprint] = alert

    def inhibited_by(self, labels: Mapping[str, str], fp: str) -> InhibitRule | None:
        """The rule that mutes an alert with these labels now, or None."""
        for rule in self.rules:
            if not matches_all(rule.target_matchers, labels):
                continue
            for source_fp, source in self._firing.items():
                if source_fp == fp or not matches_all(rule.source_matchers, source.labels):
                    continue
                if all(source.labels.get(name, "") == labels.get(name, "") for name in rule.equal):
                    return rule
        return None

    def mutes(self, alert: Alert) -> bool:
        return self.inhibited_by(alert.labels, alert.fingerprint) is not None
