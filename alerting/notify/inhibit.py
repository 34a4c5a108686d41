"""Stage 3, inhibit: a firing alert matching a rule's source mutes the alerts matching its target
that carry the same values of the rule's `equal` labels (a missing label equals a missing label),
as Alertmanager's inhibit/. An alert never inhibits itself.

One departure: an alert muted while it fired stays muted until it resolves. Alertmanager lifts the
mute as soon as the source resolves, so a consequence that outlasts its cause pages late, for a
failure already fixed: an SLO burn rate, held by its 5-minute window, paged after the InferenceOutage
that explained it was repaired in 30 s. An alert that resolves and fires again is judged afresh.
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
        self._explained: dict[str, InhibitRule] = {}  # muted while firing: stays muted until it resolves

    def observe(self, alerts: Sequence[Alert]) -> None:
        if not self.rules:
            return
        for alert in alerts:
            if alert.resolved:
                self._firing.pop(alert.fingerprint, None)
                self._explained.pop(alert.fingerprint, None)
            else:
                self._firing[alert.fingerprint] = alert
        for alert in alerts:
            if not alert.resolved and alert.fingerprint not in self._explained:
                rule = self._source_rule(alert.labels, alert.fingerprint)
                if rule is not None:
                    self._explained[alert.fingerprint] = rule

    def _source_rule(self, labels: Mapping[str, str], fp: str) -> InhibitRule | None:
        for rule in self.rules:
            if not matches_all(rule.target_matchers, labels):
                continue
            for source_fp, source in self._firing.items():
                if source_fp == fp or not matches_all(rule.source_matchers, source.labels):
                    continue
                if all(source.labels.get(name, "") == labels.get(name, "") for name in rule.equal):
                    return rule
        return None

    def inhibited_by(self, labels: Mapping[str, str], fp: str) -> InhibitRule | None:
        """The rule that mutes an alert with these labels now, or None."""
        return self._source_rule(labels, fp) or self._explained.get(fp)

    def mutes(self, alert: Alert) -> bool:
        return self.inhibited_by(alert.labels, alert.fingerprint) is not None
