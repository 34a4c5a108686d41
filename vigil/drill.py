"""`vigil drill`: prove the whole loop on a running Vigil, over its HTTP API only.

For each fault in turn: inject it (`POST /api/v1/drill/faults`), wait for its alert, let the rule
start the linked runbook or start it, approve as the drill user where the runbook asks, wait for the
run to end and the alert to resolve, then clear every fault. One row per fault: seconds from the
injection to detection, to the run's start and to mitigated-and-verified (the run succeeded and the
alert resolved), the pages the notification log shows for its incident, and the outcome. The table is
printed, written as JSON with --json, and kept as a note on each fault's incident.

The drill acts as an operator token named after --approver, which it creates for the drill and revokes
after (when its own token is an admin's), so the incident's timeline says who approved.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from vigil.errors import CliError

POLL_S = 0.5
GOAL_DETECT_S = 10.0
GOAL_VERIFY_S = 60.0
PAGE_SEVERITIES = ("page", "critical")
# Before counting a fault's pages the drill lets its consequences play out: until no alert that became
# active since the injection is pending, or fired less than NOTIFY_WAIT_S ago (its page may still be on
# its way: the SLO route waits 30 s), and nothing new for SETTLE_QUIET_S; at most SETTLE_MAX_S. A page
# that comes late (an error-budget burn after the repair) is then counted against the fault that
# caused it, not the next one.
NOTIFY_WAIT_S = 33.0
SETTLE_QUIET_S = 10.0
SETTLE_MAX_S = 60.0
# which alert label names a runbook's target, by the runbook's target kind (runbooks.model.TARGET_LABEL;
# the drill is a client of the API and imports no feature)
TARGET_LABEL = {"workload": "llm.endpoint", "gpu": "gpu.uuid", "node": "host.name"}


@dataclass(frozen=True)
class FaultPlan:
    """How a drill breaks something, and which alerts say so (the first listed is the one it follows)."""

    inject: dict[str, Any]
    alerts: tuple[str, ...]
    where: str  # workload | gpus
    params: dict[str, Any] = field(default_factory=dict)  # for the runbook, where the drill starts it
    prefer_s: float = 0.0  # after another alert, how long the first-listed one may take to follow
    load: int = 0  # long requests the drill keeps in flight on the workload while the fault is on


FAULTS: dict[str, FaultPlan] = {
    # the burn of the error budget fires first on a young Vigil (its 1 h window holds little traffic);
    # InferenceOutage follows within seconds, mutes it (alerting.config.DEFAULT_INHIBIT_RULES) and is the
    # page: the drill follows it
    "errors": FaultPlan(
        {"kind": "errors", "params": {"rate": 1.0}},
        ("InferenceOutage", "InferenceErrorBudgetBurn"),
        "workload",
        prefer_s=15.0,
    ),
    "latency": FaultPlan(
        {"kind": "latency", "params": {"delay_ms": 300}},
        ("InferenceSlowTokens", "InferenceItlBudgetBurn", "InferenceTtftBudgetBurn"),
        "workload",
        prefer_s=15.0,
    ),
    "stall": FaultPlan({"kind": "stall"}, ("EngineStalled", "EngineStalledQueued"), "workload"),
    # 98 % of the 512 KV blocks withheld leaves 11 (176 tokens): one long request fits, two do not. The drill
    # keeps `load` long requests in flight while the fault is on, so the engine preempts at once and on
    # every run (demo traffic alone preempted only when two long requests overlapped: 5-69 s measured), and
    # the runbook's fix is verified under the load that caused the storm. One sequence at a time is what
    # fits, so the drill asks the runbook for max_num_seqs 1; the drill's clear puts the workload's config
    # back as it was (runbooks.faults_api)
    "kv_pressure": FaultPlan(
        {"kind": "kv_pressure", "params": {"fraction": 0.98}},
        ("PreemptionStorm", "KvCacheSaturated"),
        "workload",
        {"max_num_seqs": 1},
        load=3,
    ),
    "crash": FaultPlan(
        {"kind": "crash"},
        ("EngineDown", "InferenceOutage", "EngineStalled", "EngineStalledQueued", "EngineAbsent"),
        "workload",
        prefer_s=10.0,
    ),
    "xid79": FaultPlan({"kind": "xid", "params": {"code": 79, "gpu": 0}}, ("GpuXidNeedsReset",), "gpus"),
    "thermal": FaultPlan(
        {"kind": "thermal", "params": {"gpu": 0}}, ("GpuThermalSlowdown", "GpuThermalThrottling"), "gpus"
    ),
    # the XID 48 the double-bit error raises pages (it mutes GpuEccUncorrectable, the same failure read
    # every 10 s); the drill follows the ECC alert where it comes within prefer_s
    "ecc": FaultPlan(
        {"kind": "ecc", "params": {"ecc": "uncorrected", "count": 2, "gpu": 0}},
        ("GpuEccUncorrectable", "GpuXidNeedsReset"),
        "gpus",
        prefer_s=15.0,
    ),
}
LOAD_PROMPT = "k" * 63  # 64 tokens with the start token (the reference model reads bytes)
LOAD_TOKENS = 96  # 160 tokens a request: 10 of the 11 KV blocks kv_pressure leaves


class Load:
    """`count` clients each sending long completions back to back to the workload until stopped.

    Errors are expected (a fault is on) and ignored; the load exists only to need the KV cache.
    """

    def __init__(self, url: str, count: int) -> None:
        self.url = url.rstrip("/") + "/v1/completions"
        self.count = count
        self.sent = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, name=f"drill-load-{i}", daemon=True) for i in range(count)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _client(self) -> None:
        body = {"prompt": LOAD_PROMPT, "max_tokens": LOAD_TOKENS, "ignore_eos": True, "temperature": 0.0}
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    client.post(self.url, json=body)
                    self.sent += 1
                except httpx.HTTPError:
                    self._stop.wait(0.5)


@dataclass
class Row:
    fault: str
    alert: str = ""
    detected_s: float | None = None
    runbook: str = ""
    run: str = ""
    auto: bool = False
    started_s: float | None = None
    verified_s: float | None = None
    resolved_s: float | None = None
    pages: int = 0
    incident: str = ""
    outcome: str = ""
    detail: str = ""
    approvals: list[str] = field(default_factory=list)
    paged: list[str] = field(default_factory=list)  # the alerts each page told firing, in order
    active_s: float | None = None  # when the followed alert's condition first held (its activeAt)
    paged_s: float | None = None  # when the first page reached the receiver
    receivers: int = 1  # receivers that deliver somewhere: with none, nobody can be paged

    def judge(self) -> None:
        """Outcome from the figures, where nothing failed on the way: ok only when every goal is met."""
        if self.outcome:
            return
        missed = []
        if self.detected_s is None or self.detected_s > GOAL_DETECT_S:
            missed.append(f"detected > {GOAL_DETECT_S:g}s")
        if self.verified_s is None or self.verified_s > GOAL_VERIFY_S:
            missed.append(f"verified > {GOAL_VERIFY_S:g}s")
        if self.resolved_s is None:
            missed.append("alert not resolved")
        if self.pages != 1:
            missed.append(f"{self.pages} pages" + ("" if self.receivers else " (no receiver configured)"))
        self.outcome = "ok" if not missed else "recovered, missed goal: " + ", ".join(missed)


class Api:
    """The running Vigil's API with one bearer token; non-2xx answers raise CliError with the detail."""

    def __init__(self, url: str, token: str, client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.http = client or httpx.Client(timeout=15)

    def call(self, method: str, path: str, token: str | None = None, ok: tuple[int, ...] = (), **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        try:
            answer = self.http.request(method, f"{self.url}{path}", headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise CliError(f"{method} {self.url}{path}: {exc!r}") from None
        if answer.status_code >= 400 and answer.status_code not in ok:
            try:
                detail = answer.json().get("detail", answer.text)
            except ValueError:
                detail = answer.text
            raise CliError(f"{method} {path} answered {answer.status_code}: {str(detail)[:500]}")
        return answer.json() if answer.content else {}


class Drill:
    def __init__(
        self,
        api: Api,
        approver: str = "drill",
        production: bool = False,
        timeout_s: float = 300.0,
        resolve_s: float = 120.0,
        say: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api, self.approver, self.production = api, approver, production
        self.timeout_s, self.resolve_s, self.say, self.clock = timeout_s, resolve_s, say, clock
        self.sleep = sleep
        self.actor: str | None = None  # the drill user's token, when the drill could make one
        self._load: Load | None = None  # the load the fault being drilled needs, while it runs
        self._actor_id = ""

    # -- around the whole drill

    def preflight(self, faults: list[str]) -> dict[str, Any]:
        target = self.api.call("GET", "/api/v1/drill/target")
        wheres = {FAULTS[f].where for f in faults}
        wl, gpus = target.get("workload"), target.get("gpus")
        if "workload" in wheres:
            if wl is None:
                raise CliError("this Vigil runs no reference workload: the workload faults have nothing to break")
            if not wl.get("reference") and not self.production:
                raise CliError(
                    f"the workload at {wl.get('url')} is not the reference one (serves {wl.get('models')}): "
                    "pass --i-know-this-is-production to drill it anyway"
                )
        if "gpus" in wheres:
            if gpus is None:
                raise CliError("this Vigil runs no GPU agent: the GPU faults have nothing to break")
            if not gpus.get("simulated") and not self.production:
                raise CliError(
                    f"the agent reads real GPUs (backend {gpus.get('backend')!r}), not simulated ones: "
                    "pass --i-know-this-is-production to drill them anyway"
                )
        if not self.api.call("GET", f"/api/v1/notifications?since={time.time():.3f}").get("receivers", [""]):
            self.say(
                "drill: no receiver is configured (VIGIL_WEBHOOK_URL, or receivers in VIGIL_ALERTING_CONFIG): "
                "nobody is paged, so every fault's page count will be 0"
            )
        return target

    def open_actor(self) -> None:
        """An operator token named after the approver, so the timeline names who approved; else the drill's own."""
        try:
            made = self.api.call(
                "POST", "/api/v1/tokens", json={"name": self.approver, "role": "operator", "expires_days": 1}
            )
        except CliError as exc:
            self.say(f"drill: acting with the given token (could not make one for {self.approver}: {exc})")
            return
        self.actor, self._actor_id = made["token"], made.get("id", "")

    def close_actor(self) -> None:
        if self._actor_id:
            self.api.call("DELETE", f"/api/v1/tokens/{self._actor_id}", ok=(404,))
            self.actor, self._actor_id = None, ""

    def write(self, method: str, path: str, **kw: Any) -> Any:
        return self.api.call(method, path, token=self.actor, **kw)

    def run(self, faults: list[str]) -> list[Row]:
        target = self.preflight(faults)
        self.open_actor()
        rows = []
        try:
            for name in faults:
                row = Row(name)
                try:
                    self.one(name, row, target)
                except CliError as exc:
                    row.outcome = row.outcome or f"error: {exc}"
                finally:
                    self.clear()
                rows.append(row)
                self.say(f"drill: {name}: {row.outcome}")
                self.record(row)
        finally:
            self.close_actor()
        return rows

    def clear(self) -> None:
        self.write("DELETE", "/api/v1/drill/faults")

    # -- one fault

    def firing(self, names: tuple[str, ...]) -> list[dict[str, Any]]:
        alerts = self.api.call("GET", "/api/v1/alerts?state=firing")["alerts"]
        return [a for a in alerts if a["labels"].get("alertname") in names]

    def wait(self, what: str, until: float, probe: Callable[[], Any]) -> Any:
        while self.clock() < until:
            found = probe()
            if found:
                return found
            self.sleep(POLL_S)
        raise CliError(f"timed out waiting for {what}")

    def one(self, name: str, row: Row, target: dict[str, Any]) -> None:
        plan = FAULTS[name]
        wl = target.get("workload") or {}
        self._load = Load(wl["url"], plan.load) if plan.load and wl.get("url") else None
        try:
            if self._load is not None:
                self._load.__enter__()
            self._one(name, row, plan)
        finally:
            self.stop_load()

    def stop_load(self) -> None:
        """The load a fault needs lasts until its runbook's run ends: the run verifies its fix under it;
        after, it would only slow the engine further (max_num_seqs 1 queues it) and burn latency budgets."""
        if self._load is not None:
            self._load.__exit__(None, None, None)
            self._load = None

    def _one(self, name: str, row: Row, plan: FaultPlan) -> None:
        before = {a["fingerprint"] for a in self.firing(plan.alerts)}
        t0, wall0 = self.clock(), time.time()
        until = t0 + self.timeout_s
        self.write("POST", "/api/v1/drill/faults", json={**plan.inject, "i_know_this_is_production": self.production})
        self.say(f"drill: {name}: injected, waiting for {' or '.join(plan.alerts)}")

        def new_alert() -> dict[str, Any] | None:
            fresh = [a for a in self.firing(plan.alerts) if a["fingerprint"] not in before]
            fresh.sort(key=lambda a: plan.alerts.index(a["labels"]["alertname"]))
            return fresh[0] if fresh else None

        try:
            alert = self.wait(f"{' or '.join(plan.alerts)} to fire", until, new_alert)
        except CliError:
            row.outcome = f"not detected in {self.timeout_s:g}s"
            raise
        row.detected_s = round(self.clock() - t0, 1)
        if alert["labels"]["alertname"] != plan.alerts[0] and plan.prefer_s:
            # a slower alert the drill prefers may still come: the errors fault fires the SLO burn first,
            # whose 5 m short window holds it long after any fix, while InferenceOutage resolves and
            # starts its own restart; detection stays the first page's time
            def preferred() -> dict[str, Any] | None:
                found = new_alert()
                return found if found and found["labels"]["alertname"] == plan.alerts[0] else None

            with contextlib.suppress(CliError):
                alert = self.wait(plan.alerts[0], min(until, self.clock() + plan.prefer_s), preferred)
        row.alert = alert["labels"]["alertname"]
        if alert.get("activeAt"):
            row.active_s = round(_unix(alert["activeAt"]) - wall0, 1)
        row.runbook = alert.get("runbook") or alert["annotations"].get("runbook", "")
        fp = alert["fingerprint"]
        self.say(f"drill: {name}: {row.alert} fires after {row.detected_s}s; runbook {row.runbook or '(none)'}")
        if not row.runbook:
            row.outcome = "no runbook offered"
            return
        run = self.start_run(row, alert, wall0, until)
        row.started_s = round(self.clock() - t0, 1)
        final = self.follow(row, run["id"], until)
        self.stop_load()
        if final["state"] != "succeeded":
            row.outcome = f"runbook {final['state']}"
            row.detail = final.get("reason", "")
            self.incident_and_pages(row, fp, wall0)
            return
        # the run's last step verified recovery on fresh data: that is mitigated and verified
        row.verified_s = round(self.clock() - t0, 1)
        self.say(f"drill: {name}: {row.runbook} succeeded after {row.verified_s}s; waiting for {row.alert} to resolve")

        def resolved() -> bool:
            return fp not in {a["fingerprint"] for a in self.firing(plan.alerts)}

        try:
            self.wait(f"{row.alert} to resolve", self.clock() + self.resolve_s, resolved)
            row.resolved_s = round(self.clock() - t0, 1)
        except CliError:
            row.detail = f"{row.alert} still firing {self.resolve_s:g}s after the run succeeded"
        self.incident_and_pages(row, fp, wall0)
        row.judge()

    def start_run(self, row: Row, alert: dict[str, Any], wall0: float, until: float) -> dict[str, Any]:
        """The run the rule started for this alert, or one the drill starts."""
        auto = alert["annotations"].get("runbook_auto", "").strip().lower() == "true"

        def auto_run() -> dict[str, Any] | None:
            runs = self.api.call("GET", f"/api/v1/runs?runbook={row.runbook}&limit=20")["runs"]
            mine = [r for r in runs if r["auto"] and _unix(r["started_at"]) >= wall0 - 1 and row.alert in r["origin"]]
            return mine[-1] if mine else None

        if auto:
            try:
                run = self.wait(f"the rule to start {row.runbook}", min(until, self.clock() + 15), auto_run)
                row.auto, row.run = True, run["id"]
                return run
            except CliError:
                self.say(f"drill: {row.fault}: the rule did not start {row.runbook}; the drill starts it")
        book = self.api.call("GET", f"/api/v1/runbooks/{row.runbook}")
        label = TARGET_LABEL.get(book["target"], "")
        body: dict[str, Any] = {"params": dict(FAULTS[row.fault].params)}
        if label and alert["labels"].get(label):
            body["target"] = alert["labels"][label]
        run = self.write("POST", f"/api/v1/runbooks/{row.runbook}/runs", json=body)
        row.run = run["id"]
        return run

    def follow(self, row: Row, run_id: str, until: float) -> dict[str, Any]:
        """Wait for the run to end, approving each step that asks."""
        while self.clock() < until:
            run = self.api.call("GET", f"/api/v1/runs/{run_id}")
            if run["state"] == "waiting_approval":
                approved = self.write("POST", f"/api/v1/runs/{run_id}/approve", ok=(409,))
                row.approvals.append(str(approved.get("actor") or self.approver))
            elif run["state"] in ("succeeded", "failed", "cancelled", "interrupted"):
                return run
            self.sleep(POLL_S)
        self.write("POST", f"/api/v1/runs/{run_id}/cancel", ok=(409,))
        return {"state": "timed out", "reason": f"still running after {self.timeout_s:g}s; cancelled"}

    def settle(self, wall0: float) -> None:
        start = quiet = self.clock()
        while self.clock() - start < SETTLE_MAX_S:
            now = time.time()
            unsettled = [
                a
                for a in self.api.call("GET", "/api/v1/alerts")["alerts"]
                if a.get("activeAt")
                and _unix(a["activeAt"]) >= wall0 - 1
                and (a["state"] == "pending" or now - _unix(a.get("firedAt") or a["activeAt"]) < NOTIFY_WAIT_S)
            ]
            if unsettled:
                quiet = self.clock()
            elif self.clock() - quiet >= SETTLE_QUIET_S:
                return
            self.sleep(POLL_S)

    def incident_and_pages(self, row: Row, fingerprint: str, wall0: float) -> None:
        """The alert's incident, and the pages on-call got while the fault was drilled: deliveries since the
        injection, to one receiver integration, that told any page-severity alert firing (whatever its
        incident: a second page for one failure is a second page, even where it opened a second incident).
        Where several integrations are configured, the count is the most any one of them got."""
        self.settle(wall0)
        for incident in self.api.call("GET", "/api/v1/incidents?status=all&limit=20")["incidents"]:
            detail = self.api.call("GET", f"/api/v1/incidents/{incident['id']}")
            if any(a.get("fingerprint") == fingerprint for a in detail.get("alerts", [])):
                row.incident = incident["id"]
                break
        answer = self.api.call("GET", f"/api/v1/notifications?since={wall0:.3f}")
        sent = answer["notifications"]
        row.receivers = len(answer.get("receivers", [""]))
        pages: dict[str, list[str]] = {}
        first: list[float] = []
        for n in sent:
            paged = sorted({a["alertname"] for a in n["firing"] if _severity(a) in PAGE_SEVERITIES})
            if paged:
                pages.setdefault(n.get("receiver", ""), []).append("+".join(paged))
                first.append(float(n.get("atUnix", 0.0)))
        told = max(pages.values(), key=len, default=[])
        row.pages = len(told)
        row.paged = told
        if first and min(first) > 0:
            row.paged_s = round(min(first) - wall0, 1)

    def record(self, row: Row) -> None:
        if not row.incident:
            return
        text = f"vigil drill, fault {row.fault}:\n{table([row])}\n{json.dumps(asdict(row), sort_keys=True)}"
        self.write("POST", f"/api/v1/incidents/{row.incident}/notes", json={"text": text[:4000]}, ok=(409,))


def _severity(alert: dict[str, Any]) -> str:
    return str(alert.get("severity") or alert.get("labels", {}).get("severity", ""))


def _unix(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    from datetime import datetime

    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _cells(r: Row) -> tuple[str, ...]:
    times = [_s(x) for x in (r.active_s, r.detected_s, r.paged_s, r.started_s, r.verified_s, r.resolved_s)]
    return (r.fault, r.alert or "-", *times, str(r.pages), r.outcome)


def table(rows: list[Row]) -> str:
    """One line per fault. `held` is when the alert's condition first held (its rule's round saw the fault's
    data), `detected` when the drill saw it firing, `paged` when the first page reached a receiver."""
    head = ("fault", "alert", "held (s)", "detected (s)", "paged (s)", "runbook started (s)")
    head += ("mitigated+verified (s)", "alert resolved (s)", "pages", "outcome")
    body = [_cells(r) for r in rows]
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in (head, *body)]
    return "\n".join(lines)
