"""Stage 1, route: which routes (and so which receivers and grouping options) an alert goes to.

As Alertmanager's dispatch/route.go: a route matches when its matchers do; its children are tried in
order, and the first child that matches ends the search unless it says `continue`; a route none of
whose children matched takes the alert itself. The root matches every alert. Children inherit the
receiver and the grouping options they do not set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from alerting.config import RouteConfig
from alerting.matchers import Matcher, matches_all

ALL_LABELS = "..."


@dataclass(frozen=True)
class Route:
    key: str  # stable across restarts while the config is unchanged: the notification log's group keys use it
    receiver: str | None
    group_by: tuple[str, ...]
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float
    matchers: tuple[Matcher, ...]
    continue_: bool
    routes: tuple[Route, ...]
    mute_time_intervals: tuple[str, ...]
    active_time_intervals: tuple[str, ...]

    @classmethod
    def build(cls, config: RouteConfig, parent: Route | None = None, index: int = 0) -> Route:
        def inherit(mine: object, name: str) -> object:
            return mine if mine is not None or parent is None else getattr(parent, name)

        path = "{" + ",".join(str(m) for m in config.matchers) + "}"
        key = path if parent is None else f"{parent.key}/{path}#{index}"
        route = cls(
            key=key,
            receiver=inherit(config.receiver, "receiver"),  # type: ignore[arg-type]
            group_by=inherit(config.group_by, "group_by") or (),  # type: ignore[arg-type]
            group_wait_s=inherit(config.group_wait_s, "group_wait_s"),  # type: ignore[arg-type]
            group_interval_s=inherit(config.group_interval_s, "group_interval_s"),  # type: ignore[arg-type]
            repeat_interval_s=inherit(config.repeat_interval_s, "repeat_interval_s"),  # type: ignore[arg-type]
            matchers=config.matchers,
            continue_=config.continue_,
            routes=(),
            mute_time_intervals=config.mute_time_intervals,
            active_time_intervals=config.active_time_intervals,
        )
        children = tuple(cls.build(child, route, i) for i, child in enumerate(config.routes))
        object.__setattr__(route, "routes", children)
        return route

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes that take an alert with these labels, in tree order (empty if this one does not match)."""
        if not matches_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            taken = child.match(labels)
            found.extend(taken)
            if taken and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        if ALL_LABELS in self.group_by:
            return dict(labels)
        return {name: labels[name] for name in self.group_by if name in labels}
