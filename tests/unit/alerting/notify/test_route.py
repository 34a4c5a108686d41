from __future__ import annotations

import pytest

from alerting.config import GROUP_WAIT_S, parse_config
from alerting.notify.route import Route

TREE = {
    "route": {
        "receiver": "default",
        "group_by": ["alertname"],
        "routes": [
            {"matchers": ["severity=page"], "receiver": "pager", "continue": True,
             "routes": [{"matchers": ["team=~ml-.*"], "receiver": "ml-pager"}]},
            {"matchers": ["severity=page"], "receiver": "slack"},
            {"matchers": ["severity=ticket"], "receiver": "tickets", "group_by": ["..."], "group_wait": "30s"},
        ],
    },
    "receivers": [{"name": n} for n in ("default", "pager", "ml-pager", "slack", "tickets")],
}  # fmt: skip


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        ({"severity": "page"}, ["pager", "slack"]),  # continue: the next sibling also takes it
        ({"severity": "page", "team": "ml-infra"}, ["ml-pager", "slack"]),  # nested child wins over its parent
        ({"severity": "page", "team": "web"}, ["pager", "slack"]),  # regex is anchored
        ({"severity": "ticket"}, ["tickets"]),
        ({"severity": "info"}, ["default"]),  # no child matched: the root takes it
        ({}, ["default"]),
    ],
)
def test_routing_follows_matchers_continue_and_nesting(labels: dict[str, str], receivers: list[str]) -> None:
    root = Route.build(parse_config(TREE).route)
    assert [r.receiver for r in root.match({"alertname": "X", **labels})] == receivers


def test_children_inherit_what_they_do_not_set() -> None:
    root = Route.build(parse_config(TREE).route)
    pager, _, tickets = root.routes
    assert pager.group_wait_s == root.group_wait_s == GROUP_WAIT_S
    assert pager.routes[0].group_by == ("alertname",)
    assert tickets.group_wait_s == 30.0
    assert tickets.group_labels({"a": "1", "b": "2"}) == {"a": "1", "b": "2"}  # '...' groups by every label
    assert len({root.key, pager.key, tickets.key, pager.routes[0].key}) == 4
