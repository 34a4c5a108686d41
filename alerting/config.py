"""The notification config: receivers, the route tree, inhibit rules and time intervals, from one YAML file.

The shape is Alertmanager's (`route`, `receivers`, `inhibit_rules`, `time_intervals`), so an
on-call team can carry theirs over. Errors name `file:line`. Secrets never sit in the file:
`routing_key_env`/`routing_key_file`, `password_env`/`password_file`, `bearer_token_env`/`_file`,
`url_env`/`url_file` name where they are; a literal `routing_key:` or `password:` is refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from alerting.matchers import Matcher, MatcherError
from alerting.notify.mute import TimeInterval, parse_time_interval
from alerting.yamlines import LineDict, load

# Defaults (the README says why). Grouping follows what identifies one failure, as Alertmanager users
# write `group_by`: a workload alert's endpoint, a GPU alert's host and GPU, an SLO's service; so the
# alerts of one failure are one group, one page and one incident (alerting.incidents groups the same way).
# A page leaves 2 s after the first alert of its group: alerts of one failure met in neighbouring rule
# rounds (2 s apart) go out together. A changed group is told again only after group_interval (Alertmanager's
# semantics; its default is 5 m, 30 s here: a resolve reaches on-call within 30 s), an unchanged firing one
# after repeat_interval.
GROUP_WAIT_S = 2.0
GROUP_INTERVAL_S = 30.0
REPEAT_INTERVAL_S = 4 * 3600.0
GROUP_BY = ("llm.endpoint", "host.name", "gpu.uuid", "service")
# SLO burn rates read 5 m and 1 h windows: waiting 30 s (Alertmanager's default group_wait) costs them
# little, and lets the fast rule of the same failure (InferenceOutage, InferenceSlowTokens), which
# explains the burn and mutes it (DEFAULT_INHIBIT_RULES), page instead: one failure, one page.
SLO_GROUP_WAIT_S = 30.0
RECEIVER_TIMEOUT_S = 10.0
ALERTMANAGER_RESEND_S = 60.0
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
WEBHOOK_RECEIVER = "webhook"  # the receiver VIGIL_WEBHOOK_URL adds when the root route has none

KINDS = {
    "webhook_configs": "webhook",
    "slack_configs": "slack",
    "pagerduty_configs": "pagerduty",
    "alertmanager_configs": "alertmanager",
}
INLINE_SECRETS = ("routing_key", "service_key", "password", "bearer_token", "credentials", "api_key")


class ConfigError(ValueError):
    """The config file is wrong; the message names file:line and what to do."""


@dataclass(frozen=True)
class IntegrationConfig:
    """One `*_configs` entry of a receiver: where and how to send."""

    kind: str  # webhook | slack | pagerduty | alertmanager
    url: str = field(repr=False)  # a Slack URL is a secret
    send_resolved: bool = True
    timeout_s: float = RECEIVER_TIMEOUT_S
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # auth, resolved from env/file
    max_alerts: int = 0  # webhook: 0 = all
    routing_key: str = field(default="", repr=False)  # pagerduty
    severity: str = "critical"  # pagerduty
    channel: str = ""  # slack
    resend_interval_s: float = ALERTMANAGER_RESEND_S  # alertmanager


@dataclass(frozen=True)
class ReceiverConfig:
    name: str
    integrations: tuple[IntegrationConfig, ...] = ()


@dataclass(frozen=True)
class RouteConfig:
    """A node of the route tree; None fields inherit from the parent (the root has the defaults)."""

    receiver: str | None = None
    group_by: tuple[str, ...] | None = None  # ("...",): every label
    group_wait_s: float | None = None
    group_interval_s: float | None = None
    repeat_interval_s: float | None = None
    matchers: tuple[Matcher, ...] = ()
    continue_: bool = False
    routes: tuple[RouteConfig, ...] = ()
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()


@dataclass(frozen=True)
class InhibitRule:
    """Firing alerts matching `source` mute alerts matching `target` that share the `equal` labels."""

    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()


def _inhibit(source: str | tuple[str, ...], target: str, *equal: str) -> InhibitRule:
    sources = (source,) if isinstance(source, str) else source
    return InhibitRule(tuple(Matcher.parse(m) for m in sources), (Matcher.parse(target),), equal)


_ENDPOINT, _GPU = ("llm.endpoint",), ("host.name", "gpu.uuid")
_BURNS = 'alertname=~"Inference(Error|Ttft|Itl)BudgetBurn(Ticket)?"'
_LATENCY_BURNS = 'alertname=~"Inference(Ttft|Itl)BudgetBurn(Ticket)?"'
# Where one alert explains another, the cause pages and the consequence is muted (the default pack's names).
# The SLO burns are the service's, not one endpoint's (no `llm.endpoint` label): the rule that explains
# them mutes them whatever its endpoint. A config file that writes `inhibit_rules:` replaces these
# (`inhibit_rules: []` turns them off).
DEFAULT_INHIBIT_RULES = (
    # a dead node is one page, not one per GPU
    _inhibit('alertname="NodeAbsent"', 'alertname="GpuMissing"', "host.name"),
    # an engine that is down fails every request, stops reporting and runs nothing
    _inhibit(
        'alertname="EngineDown"',
        'alertname=~"InferenceOutage|EngineStalled|EngineStalledQueued|EngineAbsent|InferenceSlowTokens"',
        *_ENDPOINT,
    ),
    _inhibit('alertname="EngineDown"', _BURNS),
    # most requests failing burns the error budget
    _inhibit('alertname="InferenceOutage"', 'alertname=~"InferenceErrorBudgetBurn(Ticket)?"'),
    # slow decode steps are slow tokens: they burn the latency budgets
    _inhibit('alertname="InferenceSlowTokens"', _LATENCY_BURNS),
    # slow tokens delay the first token too (requests queue behind slow steps)
    _inhibit('alertname="InferenceItlBudgetBurn"', 'alertname=~"InferenceTtftBudgetBurn(Ticket)?"', "service"),
    # the page of a burn and its slower ticket
    _inhibit('alertname="InferenceErrorBudgetBurn"', 'alertname="InferenceErrorBudgetBurnTicket"', "service"),
    _inhibit('alertname="InferenceTtftBudgetBurn"', 'alertname="InferenceTtftBudgetBurnTicket"', "service"),
    _inhibit('alertname="InferenceItlBudgetBurn"', 'alertname="InferenceItlBudgetBurnTicket"', "service"),
    # the page and the slower ticket of one failure
    _inhibit('alertname="PreemptionStorm"', 'alertname="KvCacheSaturated"', *_ENDPOINT),
    # a preempted request computes its prompt again, a stalled engine's requests wait: first tokens and
    # tokens come late
    _inhibit('alertname=~"PreemptionStorm|EngineStalled|EngineStalledQueued"', _LATENCY_BURNS),
    _inhibit('alertname=~"EngineStalled|EngineStalledQueued"', 'alertname="InferenceSlowTokens"', *_ENDPOINT),
    _inhibit('alertname="GpuThermalSlowdown"', 'alertname="GpuThermalThrottling"', *_GPU),
    # XID 48 is the double-bit ECC error the uncorrected ECC counter counts: one failure
    _inhibit(('alertname="GpuXidNeedsReset"', 'xid="48"'), 'alertname="GpuEccUncorrectable"', *_GPU),
    # a GPU that fell off the bus reports XID 79 and, after a while, nothing at all
    _inhibit('alertname="GpuLost"', 'alertname=~"GpuXidNeedsReset|GpuMissing"', *_GPU),
)


def _default_route() -> RouteConfig:
    slo = RouteConfig(matchers=(Matcher.parse('category="slo"'),), group_wait_s=SLO_GROUP_WAIT_S)
    return RouteConfig(
        group_by=GROUP_BY,
        group_wait_s=GROUP_WAIT_S,
        group_interval_s=GROUP_INTERVAL_S,
        repeat_interval_s=REPEAT_INTERVAL_S,
        routes=(slo,),
    )


@dataclass(frozen=True)
class AlertingConfig:
    # a config file's `route:` replaces the default one, its SLO child route included
    route: RouteConfig = field(default_factory=_default_route)
    receivers: Mapping[str, ReceiverConfig] = field(default_factory=dict)
    inhibit_rules: tuple[InhibitRule, ...] = DEFAULT_INHIBIT_RULES
    time_intervals: Mapping[str, TimeInterval] = field(default_factory=dict)
    external_url: str = ""


def parse_duration(value: Any, where: str) -> float:
    """`30s`, `5m`, `4h`, `1h30m`, `500ms`, `1d`, or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration such as 5s, 1m or 4h, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"{where}: a duration cannot be negative")
        return float(value)
    text = str(value).strip()
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
    total, number, i = 0.0, "", 0
    if not text:
        raise ConfigError(f"{where}: expected a duration such as 5s, 1m or 4h")
    while i < len(text):
        c = text[i]
        if c.isdigit() or c == ".":
            number += c
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else c
        if unit not in units or not number:
            raise ConfigError(f"{where}: {text!r} is not a duration; use e.g. 5s, 1m, 4h or 1h30m")
        total += float(number) * units[unit]
        number, i = "", i + len(unit)
    if number:
        raise ConfigError(f"{where}: {text!r} lacks a unit; use e.g. {number}s")
    return total


class _Reader:
    """Reads one file's mappings, naming file:line in every error."""

    def __init__(self, path: Path | None, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env

    def where(self, node: Any, key: str | None = None) -> str:
        line = 0
        if isinstance(node, LineDict):
            line = node.line_of(key) if key else node.line
        return f"{self.path or '<config>'}:{line}"

    def mapping(self, node: Any, what: str, parent: Any = None, key: str | None = None) -> dict[str, Any]:
        if not isinstance(node, dict):
            raise ConfigError(f"{self.where(parent, key)}: {what} must be a mapping")
        return node

    def known(self, node: dict[str, Any], allowed: set[str], what: str) -> None:
        for key in node:
            if key in INLINE_SECRETS:
                raise ConfigError(
                    f"{self.where(node, key)}: {what}: `{key}` may not be written in the config; "
                    f"name where it is with `{key}_env: VARIABLE` or `{key}_file: /path`"
                )
            if key not in allowed:
                raise ConfigError(f"{self.where(node, key)}: {what}: unknown key `{key}`; known: {sorted(allowed)}")

    def strings(self, node: dict[str, Any], key: str) -> tuple[str, ...]:
        value = node.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
            raise ConfigError(f"{self.where(node, key)}: `{key}` must be a list of strings")
        return tuple(str(v) for v in value)

    def matchers(self, node: dict[str, Any], key: str) -> tuple[Matcher, ...]:
        try:
            return tuple(Matcher.parse(text) for text in self.strings(node, key))
        except MatcherError as exc:
            raise ConfigError(f"{self.where(node, key)}: {exc}") from None

    def secret(self, node: dict[str, Any], name: str, what: str, required: bool) -> str:
        env_key, file_key = f"{name}_env", f"{name}_file"
        if env_key in node:
            variable = str(node[env_key])
            if variable not in self.env:
                raise ConfigError(
                    f"{self.where(node, env_key)}: {what}: the environment variable {variable} is not set"
                )
            return self.env[variable].strip()
        if file_key in node:
            path = Path(str(node[file_key])).expanduser()
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{self.where(node, file_key)}: {what}: cannot read {path}: {exc.strerror}") from None
        if required:
            raise ConfigError(f"{self.where(node)}: {what}: give `{env_key}: VARIABLE` or `{file_key}: /path`")
        return ""

    def route(self, node: Any, parent: Any, key: str, root: bool) -> RouteConfig:
        node = self.mapping(node, "a route", parent, key)
        allowed = {"receiver", "group_by", "group_wait", "group_interval", "repeat_interval", "matchers", "continue"}
        allowed |= {"routes", "mute_time_intervals", "active_time_intervals"}
        self.known(node, allowed, "route")
        if root and node.get("matchers"):
            raise ConfigError(f"{self.where(node, 'matchers')}: the root route matches every alert; it has no matchers")
        children = node.get("routes", [])
        if not isinstance(children, list):
            raise ConfigError(f"{self.where(node, 'routes')}: `routes` must be a list of routes")

        def duration(name: str) -> float | None:
            return parse_duration(node[name], self.where(node, name)) if name in node else None

        return RouteConfig(
            receiver=str(node["receiver"]) if node.get("receiver") is not None else None,
            group_by=self.strings(node, "group_by") if "group_by" in node else None,
            group_wait_s=duration("group_wait"),
            group_interval_s=duration("group_interval"),
            repeat_interval_s=duration("repeat_interval"),
            matchers=self.matchers(node, "matchers"),
            continue_=bool(node.get("continue", False)),
            routes=tuple(self.route(child, node, "routes", False) for child in children),
            mute_time_intervals=self.strings(node, "mute_time_intervals"),
            active_time_intervals=self.strings(node, "active_time_intervals"),
        )

    def integration(self, kind: str, node: Any, parent: Any, key: str, receiver: str) -> IntegrationConfig:
        what = f"receiver {receiver} {key}"
        node = self.mapping(node, what, parent, key)
        common = {"send_resolved", "timeout", "url", "url_env", "url_file"}
        extra = {
            "webhook": {"max_alerts", "basic_auth", "bearer_token_env", "bearer_token_file"},
            "slack": {"channel"},
            "pagerduty": {"routing_key_env", "routing_key_file", "severity"},
            "alertmanager": {"resend_interval"},
        }[kind]
        self.known(node, common | extra, what)
        url = str(node["url"]) if "url" in node else self.secret(node, "url", what, required=kind != "pagerduty")
        if kind == "pagerduty":
            url = url or PAGERDUTY_URL
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{self.where(node, 'url')}: {what}: the url must start with http:// or https://")
        headers: list[tuple[str, str]] = []
        if kind == "webhook":
            token = self.secret(node, "bearer_token", what, required=False)
            if token:
                headers.append(("Authorization", f"Bearer {token}"))
            if "basic_auth" in node:
                auth = self.mapping(node["basic_auth"], "basic_auth", node, "basic_auth")
                self.known(auth, {"username", "password_env", "password_file"}, f"{what} basic_auth")
                import base64

                password = self.secret(auth, "password", f"{what} basic_auth", required=True)
                pair = f"{auth.get('username', '')}:{password}".encode()
                headers.append(("Authorization", "Basic " + base64.b64encode(pair).decode()))
        config = IntegrationConfig(
            kind=kind,
            url=url,
            send_resolved=bool(node.get("send_resolved", True)),
            timeout_s=parse_duration(node.get("timeout", RECEIVER_TIMEOUT_S), self.where(node, "timeout")),
            headers=tuple(headers),
            max_alerts=int(node.get("max_alerts", 0)),
            channel=str(node.get("channel", "")),
        )
        if kind == "pagerduty":
            config = replace(
                config,
                routing_key=self.secret(node, "routing_key", what, required=True),
                severity=str(node.get("severity", "critical")),
            )
        if kind == "alertmanager":
            resend = parse_duration(
                node.get("resend_interval", ALERTMANAGER_RESEND_S), self.where(node, "resend_interval")
            )
            config = replace(config, resend_interval_s=resend)
        if config.timeout_s <= 0:
            raise ConfigError(f"{self.where(node, 'timeout')}: {what}: the timeout must be above zero")
        return config

    def receiver(self, node: Any, parent: Any) -> ReceiverConfig:
        node = self.mapping(node, "a receiver", parent, "receivers")
        self.known(node, {"name", *KINDS}, "receiver")
        name = node.get("name")
        if not name:
            raise ConfigError(f"{self.where(node)}: a receiver needs a `name`")
        integrations: list[IntegrationConfig] = []
        for key, kind in KINDS.items():
            entries = node.get(key, [])
            if not isinstance(entries, list):
                raise ConfigError(f"{self.where(node, key)}: `{key}` must be a list")
            integrations.extend(self.integration(kind, entry, node, key, str(name)) for entry in entries)
        return ReceiverConfig(str(name), tuple(integrations))


def _defaults(route: RouteConfig) -> RouteConfig:
    return replace(
        route,
        group_by=route.group_by if route.group_by is not None else GROUP_BY,
        group_wait_s=route.group_wait_s if route.group_wait_s is not None else GROUP_WAIT_S,
        group_interval_s=route.group_interval_s if route.group_interval_s is not None else GROUP_INTERVAL_S,
        repeat_interval_s=route.repeat_interval_s if route.repeat_interval_s is not None else REPEAT_INTERVAL_S,
    )


def _check_references(config: AlertingConfig, path: Path | None) -> None:
    def walk(route: RouteConfig) -> None:
        if route.receiver is not None and route.receiver not in config.receivers:
            raise ConfigError(f"{path or '<config>'}: a route names receiver {route.receiver!r}, which is not defined")
        for name in (*route.mute_time_intervals, *route.active_time_intervals):
            if name not in config.time_intervals:
                raise ConfigError(f"{path or '<config>'}: a route names time interval {name!r}, which is not defined")
        for child in route.routes:
            walk(child)

    walk(config.route)


def parse_config(data: Any, path: Path | None = None, env: Mapping[str, str] | None = None) -> AlertingConfig:
    reader = _Reader(path, os.environ if env is None else env)
    if data is None:
        return AlertingConfig()
    top = reader.mapping(data, "the config")
    reader.known(top, {"route", "receivers", "inhibit_rules", "time_intervals", "external_url", "global"}, "config")
    route = _defaults(reader.route(top["route"], top, "route", root=True)) if "route" in top else _default_route()
    receivers: dict[str, ReceiverConfig] = {}
    for node in top.get("receivers") or []:
        receiver = reader.receiver(node, top)
        if receiver.name in receivers:
            raise ConfigError(f"{reader.where(node)}: receiver {receiver.name!r} is defined twice")
        receivers[receiver.name] = receiver
    inhibit_rules = [] if "inhibit_rules" in top else list(DEFAULT_INHIBIT_RULES)
    for node in top.get("inhibit_rules") or []:
        rule = reader.mapping(node, "an inhibit rule", top, "inhibit_rules")
        reader.known(rule, {"source_matchers", "target_matchers", "equal"}, "inhibit rule")
        inhibit_rules.append(
            InhibitRule(
                reader.matchers(rule, "source_matchers"),
                reader.matchers(rule, "target_matchers"),
                reader.strings(rule, "equal"),
            )
        )
    intervals: dict[str, TimeInterval] = {}
    for node in top.get("time_intervals") or []:
        entry = reader.mapping(node, "a time interval", top, "time_intervals")
        try:
            interval = parse_time_interval(entry)
        except ValueError as exc:
            raise ConfigError(f"{reader.where(entry)}: {exc}") from None
        intervals[interval.name] = interval
    config = AlertingConfig(route, receivers, tuple(inhibit_rules), intervals, str(top.get("external_url", "")))
    _check_references(config, path)
    return config


def with_webhook(config: AlertingConfig, url: str) -> AlertingConfig:
    """`VIGIL_WEBHOOK_URL`: a webhook (send_resolved) on the root route, beside its receiver if it has one."""
    webhook = IntegrationConfig(kind="webhook", url=url)
    receivers = dict(config.receivers)
    name = config.route.receiver or WEBHOOK_RECEIVER
    existing = receivers.get(name, ReceiverConfig(name))
    receivers[name] = replace(existing, integrations=(*existing.integrations, webhook))
    return replace(config, route=replace(config.route, receiver=name), receivers=receivers)


def load_config(path: Path | None, settings: Any, env: Mapping[str, str] | None = None) -> AlertingConfig:
    """Read the YAML at `path` (None: defaults, a root route with no receiver) and apply `VIGIL_WEBHOOK_URL`."""
    data = None
    if path is not None:
        try:
            data = load(Path(path))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the alerting config: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    config = parse_config(data, path, env)
    url = settings.webhook_url
    if url:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"VIGIL_WEBHOOK_URL: {url!r} must start with http:// or https://")
        config = with_webhook(config, url)
    return config
