"""Fault injection for drills, under `/api/v1/drill`: `vigil drill` (or a person) breaks the reference
workload or a simulated GPU on purpose, through the same control APIs the runbook actions use.

A runbook's fix may change the workload's config (kv-cache-saturated lowers max_num_seqs, the shedding
runbooks shed): the config as it was before a drill's first workload fault is kept, and clearing the
faults restores it, so a drill leaves the workload as it found it. The runbook cannot raise it back
itself: it verifies while the fault is still injected, and a raised max_num_seqs would preempt again.

A drill is for the reference workload and simulated GPUs. Anything else is refused (409) unless the
request says `i_know_this_is_production: true`; even then the agent refuses faults on real GPUs itself.
Viewers read what is injected and where; operators inject and clear (with CSRF on a session).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import httpx
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from vigil.access import Principal, Role, require
from vigil.kernel import RunPlan
from vigil.logs import event
from vigil.providers import provided, unbound

log = logging.getLogger(__name__)

WORKLOAD_KINDS = frozenset({"errors", "latency", "stall", "kv_pressure", "crash"})
GPU_KINDS = frozenset({"xid", "thermal", "ecc", "fall-off-bus"})
REFERENCE_MODEL = "vigil-tiny-lm"  # what the reference workload serves (workload.model)
TIMEOUT_S = 5.0
RESTORED = ("max_num_seqs", "max_num_batched_tokens", "num_blocks", "shed_fraction")  # what a drill puts back


class DrillRefused(Exception):
    """The target is not one a drill may break, or is absent; the message says why."""


class FaultFailed(Exception):
    """The control API refused the fault or did not answer."""


class FaultIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["errors", "latency", "stall", "kv_pressure", "crash", "xid", "thermal", "ecc", "fall-off-bus"]
    params: dict[str, str | int | float] = Field(default_factory=dict, max_length=16)
    target: str | None = Field(None, max_length=512, description="the workload's URL; default the reference one")
    i_know_this_is_production: bool = False


class DrillFaults:
    """Reaches the workload's control API (with the plan's control token) and the agent's."""

    def __init__(self, plan: RunPlan, client: httpx.Client | None = None) -> None:
        self._plan = plan
        self._http = client or httpx.Client(timeout=TIMEOUT_S)
        self._config_before: dict[str, Any] | None = None  # the workload's, before this drill's first fault

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, url: str, **kw: Any) -> tuple[int, Any]:
        try:
            answer = self._http.request(method, url, timeout=TIMEOUT_S, **kw)
        except httpx.HTTPError as exc:
            raise FaultFailed(f"{method} {url}: {exc!r}") from None
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, {"text": answer.text[:500]}

    def _workload(self) -> tuple[str, dict[str, str]]:
        wl = self._plan.workload
        if wl is None:
            raise DrillRefused("no reference workload runs under this Vigil (--no-workload)")
        return wl.url, {"Authorization": f"Bearer {wl.control_token}"} if wl.control_token else {}

    def target(self) -> dict[str, Any]:
        """What a drill would break: is the workload the reference one, are the GPUs simulated, what is injected."""
        out: dict[str, Any] = {"workload": None, "gpus": None}
        if self._plan.workload is not None:
            url, headers = self._workload()
            try:
                _, models = self._call("GET", f"{url}/v1/models")
                _, faults = self._call("GET", f"{url}/control/fault", headers=headers)
            except FaultFailed as exc:
                out["workload"] = {"url": url, "reference": False, "error": str(exc)}
            else:
                names = [m.get("id") for m in models.get("data", [])] if isinstance(models, dict) else []
                out["workload"] = {
                    "url": url,
                    "metrics_url": self._plan.workload.metrics_url,
                    "models": names,
                    "reference": names == [REFERENCE_MODEL],
                    "faults": faults.get("faults", []) if isinstance(faults, dict) else [],
                }
        if self._plan.agent is not None:
            url = self._plan.agent.control_url
            try:
                _, probe = self._call("GET", f"{url}/probe")
                _, faults = self._call("GET", f"{url}/faults")
            except FaultFailed as exc:
                out["gpus"] = {"url": url, "simulated": False, "error": str(exc)}
            else:
                devices = probe.get("devices", []) if isinstance(probe, dict) else []
                out["gpus"] = {
                    "url": url,
                    "backend": probe.get("backend") if isinstance(probe, dict) else None,
                    "simulated": isinstance(probe, dict) and probe.get("backend") == "simulated",
                    "uuids": [d.get("attributes", {}).get("gpu.uuid") for d in devices],
                    "host": probe.get("host", {}).get("host.name") if isinstance(probe, dict) else None,
                    "faults": faults.get("faults", []) if isinstance(faults, dict) else [],
                }
        return out

    def inject(self, fault: FaultIn) -> dict[str, Any]:
        where = self.target()
        if fault.kind in WORKLOAD_KINDS:
            wl = where["workload"]
            if wl is None:
                raise DrillRefused("no reference workload runs under this Vigil (--no-workload)")
            if fault.target and fault.target not in (wl["url"], wl.get("metrics_url")):
                raise DrillRefused(f"{fault.target!r} is not the workload this Vigil runs ({wl['url']})")
            if not wl["reference"] and not fault.i_know_this_is_production:
                raise DrillRefused(
                    f"{wl['url']} serves {wl.get('models')}, not the reference workload ({REFERENCE_MODEL}): "
                    "send i_know_this_is_production: true to break it anyway"
                )
            url, headers = self._workload()
            if self._config_before is None:
                status, config = self._call("GET", f"{url}/control/config", headers=headers)
                if status == 200 and isinstance(config, dict):
                    self._config_before = {k: config[k] for k in RESTORED if k in config}
            status, body = self._call(
                "POST", f"{url}/control/fault", headers=headers, json={"kind": fault.kind, **fault.params}
            )
        else:
            gpus = where["gpus"]
            if gpus is None:
                raise DrillRefused("no GPU agent runs under this Vigil (--no-agent)")
            if not gpus["simulated"] and not fault.i_know_this_is_production:
                raise DrillRefused(
                    f"the agent reads real GPUs (backend {gpus.get('backend')!r}), not simulated ones: "
                    "send i_know_this_is_production: true to try anyway (the agent refuses faults on real GPUs)"
                )
            status, body = self._call("POST", f"{gpus['url']}/faults", json={"kind": fault.kind, **fault.params})
        if status == 409:
            raise DrillRefused(_detail(body))
        if status >= 400:
            raise FaultFailed(f"the control API answered {status}: {_detail(body)}")
        event(log, "drill_fault_injected", kind=fault.kind, **{k: str(v) for k, v in fault.params.items()})
        return {"kind": fault.kind, "params": fault.params, "answer": body}

    def _restore(self, url: str, headers: dict[str, str], before: dict[str, Any]) -> dict[str, Any]:
        """Put back what differs from the config kept before the drill; answers what was put back."""
        status, now = self._call("GET", f"{url}/control/config", headers=headers)
        if status != 200 or not isinstance(now, dict):
            raise FaultFailed(f"the workload's config could not be read to restore it: {_detail(now)}")
        done: dict[str, Any] = {}
        patch = _restored_patch(before, now)
        if patch:
            status, body = self._call("PATCH", f"{url}/control/config", headers=headers, json=patch)
            if status >= 400:
                raise FaultFailed(f"restoring the workload's config {patch} answered {status}: {_detail(body)}")
            done.update(patch)
        shed = before.get("shed_fraction")
        if shed is not None and now.get("shed_fraction") != shed:
            status, body = self._call("POST", f"{url}/control/shed", headers=headers, json={"fraction": shed})
            if status >= 400:
                raise FaultFailed(f"restoring the shed fraction {shed} answered {status}: {_detail(body)}")
            done["shed_fraction"] = shed
        if done:
            event(log, "drill_config_restored", **{k: str(v) for k, v in done.items()})
        return done

    def clear(self) -> dict[str, Any]:
        """Clear every fault where a drill may inject one, and put back the workload's config as it was
        before the drill's first workload fault; answers what each place said."""
        out: dict[str, Any] = {}
        if self._plan.workload is not None:
            url, headers = self._workload()
            out["workload"] = self._call("DELETE", f"{url}/control/fault", headers=headers)[1]
            if self._config_before is not None:
                out["restored"] = self._restore(url, headers, self._config_before)
                self._config_before = None
        if self._plan.agent is not None:
            out["gpus"] = self._call("DELETE", f"{self._plan.agent.control_url}/faults")[1]
        event(log, "drill_faults_cleared")
        return out


def _restored_patch(before: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in before.items() if k != "shed_fraction" and now.get(k) != v}


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            if key in body:
                value = body[key]
                return str(value.get("message", value) if isinstance(value, dict) else value)
    return str(body)[:500]


async def get_drill_faults(request: Request) -> DrillFaults:
    """Placeholder: `RunbooksService` binds its `DrillFaults` (`vigil.providers`)."""
    return await provided(
        request,
        get_drill_faults,
        unbound("no drill faults bound: mount this router through runbooks.service.RunbooksService"),
    )


router = APIRouter(prefix="/api/v1/drill", tags=["drill"])
FAULTS = Depends(get_drill_faults)
READER = Depends(require(Role.VIEWER))
OPERATOR = Depends(require(Role.OPERATOR, write=True))


async def _answer(call: Any, *args: Any) -> Any:
    try:
        return await run_in_threadpool(call, *args)
    except DrillRefused as exc:
        raise HTTPException(409, str(exc)) from None
    except FaultFailed as exc:
        raise HTTPException(502, str(exc)) from None


@router.get("/target", summary="What a drill would break: the workload (reference?), the GPUs (simulated?), faults")
async def drill_target(faults: DrillFaults = FAULTS, _: Principal = READER) -> dict[str, Any]:
    return await _answer(faults.target)


@router.post("/faults", status_code=201, summary="Inject a fault into the reference workload or a simulated GPU")
async def inject_fault(body: FaultIn, faults: DrillFaults = FAULTS, who: Principal = OPERATOR) -> dict[str, Any]:
    event(log, "drill_fault_requested", kind=body.kind, by=who.name)
    return await _answer(faults.inject, body)


@router.delete("/faults", summary="Clear every injected fault, in the workload and the simulated GPUs")
async def clear_faults(faults: DrillFaults = FAULTS, who: Principal = OPERATOR) -> dict[str, Any]:
    event(log, "drill_faults_clear_requested", by=who.name)
    return await _answer(faults.clear)
