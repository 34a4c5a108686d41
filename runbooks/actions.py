"""The edge where runbook actions touch the world: the workload's and the agent's control APIs over
HTTP, the Kubernetes API, NVML. An action the environment does not allow is refused with the
reason (`ActionRefused`), never faked; `preflight` tells a dry run the same without acting.

Every action honours its attempt's `Deadline`: each request's timeout is the time the step has left,
an answer is read in chunks that stop once the deadline passes or the run is cancelled, and no
request starts after it. So a timed-out step stops doing work at its timeout, not at some HTTP default.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from runbooks.deadline import Deadline
from runbooks.model import TargetKind
from vigil.kernel import RunPlan
from vigil.logs import event

log = logging.getLogger(__name__)

MAX_EVICTIONS = 500  # pods evicted by one drain; a node holding more is not one a runbook should empty
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # one answer read whole (a node's pod list is the largest expected)
DRAIN_MARGIN_S = 2.0  # a drained restart's answer comes after its drain: the step needs this much beyond it


class ActionRefused(Exception):
    """The target or the environment does not allow the action; the message says why and what would."""


class ActionFailed(Exception):
    """The action was tried and failed (a refused request, a timeout); retrying may help."""


class ActionTimedOut(ActionFailed):
    """The step's time ran out (or the run was cancelled) before the action finished; it did no more."""


@dataclass(frozen=True)
class KubeConfig:
    """Where the Kubernetes API is; empty `url` means none is configured and node actions are refused."""

    url: str = ""
    token_file: Path | None = None
    ca_file: Path | None = None


class Actuators:
    """Performs actions for the engine. `nvml` gives pynvml where GPU actions are permitted, else None."""

    def __init__(
        self,
        plan: RunPlan,
        kube: KubeConfig,
        nvml: Callable[[], Any] | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self._plan = plan
        self._kube = kube
        self._nvml = nvml
        self._http = client or httpx.Client()
        # the cluster's own CA, where given, for the Kubernetes API only
        self._kube_http = httpx.Client(verify=str(kube.ca_file)) if kube.url and kube.ca_file else self._http

    def close(self) -> None:
        self._http.close()
        if self._kube_http is not self._http:
            self._kube_http.close()

    # -- what a dry run shows ------------------------------------------------------------------

    def preflight(self, kind: TargetKind, target: str, verb: str, args: Mapping[str, Any]) -> str | None:
        """Why the action would be refused, or None when it would be tried. Changes nothing."""
        try:
            if kind is TargetKind.WORKLOAD:
                self._workload(target)
            elif kind is TargetKind.NODE:
                self._kube_base()
            elif verb == "clear_fault":
                self._agent()
            else:
                self._nvml_refusal(verb)
        except ActionRefused as exc:
            return str(exc)
        return None

    # -- acting --------------------------------------------------------------------------------

    def perform(
        self, kind: TargetKind, target: str, verb: str, args: Mapping[str, Any], deadline: Deadline
    ) -> dict[str, Any]:
        """Do it within `deadline`; answers what the far side said. Raises ActionRefused or ActionFailed
        (ActionTimedOut when the deadline passed or the run was cancelled first)."""
        event(log, "runbook_action", target_kind=kind.value, target=target, action=verb)
        if kind is TargetKind.WORKLOAD:
            return self._workload_action(target, verb, args, deadline)
        if kind is TargetKind.NODE:
            return self._node_action(target, verb, args, deadline)
        if verb == "clear_fault":
            return self._request("DELETE", f"{self._agent()}/faults", deadline)
        return self._gpu_nvml(target, verb, args, deadline)

    def _request(
        self, method: str, url: str, deadline: Deadline, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        client = self._kube_http if self._kube.url and url.startswith(self._kube.url.rstrip("/")) else self._http
        _in_time(deadline, f"{method} {url}: not sent")
        left = deadline.left()
        try:
            with client.stream(method, url, headers=headers, timeout=left, **kwargs) as answer:
                raw = bytearray()
                for chunk in answer.iter_bytes():
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        raise ActionFailed(f"{method} {url}: answer larger than {MAX_ANSWER_BYTES} bytes")
                    _in_time(deadline, f"{method} {url}: answer cut off")
        except httpx.TimeoutException:
            raise ActionTimedOut(f"{method} {url}: no answer within the step's {left:.3g}s left") from None
        except httpx.HTTPError as exc:
            raise ActionFailed(f"{method} {url}: {exc}") from None
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"text": raw[:2000].decode(errors="replace")}
        if answer.status_code == 409:
            raise ActionRefused(f"{method} {url} refused (409): {_detail(body)}")
        if answer.status_code >= 400:
            raise ActionFailed(f"{method} {url} answered {answer.status_code}: {_detail(body)}")
        return body if isinstance(body, dict) else {"answer": body}

    # workload

    def _workload(self, target: str) -> tuple[str, dict[str, str]]:
        wl = self._plan.workload
        if wl is None:
            raise ActionRefused("no reference workload runs under this Vigil (--no-workload): nothing to act on")
        if target not in (wl.url, wl.metrics_url):
            raise ActionRefused(
                f"{target!r} is not the reference workload ({wl.metrics_url}): Vigil controls only the workload it runs"
            )
        return wl.url, {"Authorization": f"Bearer {wl.control_token}"} if wl.control_token else {}

    def _workload_action(self, target: str, verb: str, args: Mapping[str, Any], deadline: Deadline) -> dict[str, Any]:
        url, headers = self._workload(target)
        if verb == "set_config":
            return self._request("PATCH", f"{url}/control/config", deadline, headers, json=dict(args))
        if verb == "shed":
            return self._request("POST", f"{url}/control/shed", deadline, headers, json={"fraction": args["fraction"]})
        if verb == "restart":
            drain = float(args.get("drain_timeout_s", 10.0))
            if drain + DRAIN_MARGIN_S > deadline.seconds:
                raise ActionRefused(
                    f"a drain of {drain:g}s does not fit the step's timeout of {deadline.seconds:g}s: "
                    f"give the step a timeout of at least {drain + DRAIN_MARGIN_S:g}s"
                )
            return self._request("POST", f"{url}/control/restart", deadline, headers, json={"drain_timeout_s": drain})
        if verb == "clear_faults":
            params = {"kind": args["kind"]} if args.get("kind") else None
            return self._request("DELETE", f"{url}/control/fault", deadline, headers, params=params)
        raise ActionRefused(f"{verb!r} is not a workload action")

    # agent (simulated GPUs)

    def _agent(self) -> str:
        if self._plan.agent is None:
            raise ActionRefused("no GPU agent runs under this Vigil (--no-agent): its faults cannot be cleared")
        return self._plan.agent.control_url

    # NVML

    def _nvml_refusal(self, verb: str) -> None:
        if verb == "reset":
            raise ActionRefused(
                "NVML has no GPU reset call: drain the node, then run `nvidia-smi -r -i <gpu>` on it as root"
            )
        if self._nvml is None:
            raise ActionRefused(
                "GPU power caps through NVML are not permitted here: set VIGIL_RUNBOOK_NVML_ACTIONS=true where "
                "Vigil runs on the GPU's host with the rights to change its power limit"
            )

    def _gpu_nvml(self, target: str, verb: str, args: Mapping[str, Any], deadline: Deadline) -> dict[str, Any]:
        self._nvml_refusal(verb)
        assert self._nvml is not None
        nvml = self._nvml()
        try:
            nvml.nvmlInit()
        except Exception as exc:
            raise ActionRefused(f"NVML is not available on this host: {exc}") from None
        try:
            try:
                handle = nvml.nvmlDeviceGetHandleByUUID(target)
            except Exception:
                raise ActionRefused(
                    f"no GPU {target} on this host (a simulated GPU has no power limit to set)"
                ) from None
            low, high = nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
            watts = float(args["watts"])
            if not low <= watts * 1000 <= high:
                raise ActionFailed(f"{watts:g} W is outside the GPU's range {low / 1000:g} to {high / 1000:g} W")
            _in_time(deadline, "power limit not set")
            try:
                nvml.nvmlDeviceSetPowerManagementLimit(handle, int(watts * 1000))
            except Exception as exc:
                raise ActionRefused(f"NVML refused the power limit: {exc}") from None
            return {"gpu": target, "power_limit_w": watts}
        finally:
            nvml.nvmlShutdown()

    # Kubernetes

    def _kube_base(self) -> tuple[str, dict[str, str]]:
        if not self._kube.url:
            raise ActionRefused(
                "no Kubernetes API is configured: set VIGIL_RUNBOOK_KUBE_API_URL (and its token file) to cordon "
                "and drain nodes"
            )
        headers = {}
        if self._kube.token_file is not None:
            try:
                headers["Authorization"] = f"Bearer {self._kube.token_file.read_text().strip()}"
            except OSError as exc:
                raise ActionRefused(f"cannot read the Kubernetes token {self._kube.token_file}: {exc}") from None
        return self._kube.url.rstrip("/"), headers

    def _node_action(self, node: str, verb: str, args: Mapping[str, Any], deadline: Deadline) -> dict[str, Any]:
        base, headers = self._kube_base()
        if verb in ("cordon", "uncordon"):
            return self._cordon(base, headers, node, verb == "cordon", deadline)
        if verb != "drain":
            raise ActionRefused(f"{verb!r} is not a node action")
        self._cordon(base, headers, node, True, deadline)
        pods = self._request(
            "GET", f"{base}/api/v1/pods", deadline, headers, params={"fieldSelector": f"spec.nodeName={node}"}
        ).get("items", [])
        evicted, skipped = [], []
        for pod in pods[: MAX_EVICTIONS + 1]:
            meta = pod.get("metadata", {})
            owners = {o.get("kind") for o in meta.get("ownerReferences", [])}
            name, namespace = meta.get("name", ""), meta.get("namespace", "default")
            # DaemonSet pods come back at once, mirror pods are the kubelet's: kubectl drain skips both
            if "DaemonSet" in owners or "kubernetes.io/config.mirror" in meta.get("annotations", {}):
                skipped.append(f"{namespace}/{name}")
                continue
            if len(evicted) >= MAX_EVICTIONS:
                raise ActionFailed(f"{node} holds more than {MAX_EVICTIONS} pods: drain it by hand")
            body: dict[str, Any] = {
                "apiVersion": "policy/v1",
                "kind": "Eviction",
                "metadata": {"name": name, "namespace": namespace},
            }
            if "grace_period_s" in args:
                body["deleteOptions"] = {"gracePeriodSeconds": int(args["grace_period_s"])}
            self._request(
                "POST", f"{base}/api/v1/namespaces/{namespace}/pods/{name}/eviction", deadline, headers, json=body
            )
            evicted.append(f"{namespace}/{name}")
        return {"node": node, "cordoned": True, "evicted": evicted, "skipped": skipped}

    def _cordon(self, base: str, headers: dict[str, str], node: str, on: bool, deadline: Deadline) -> dict[str, Any]:
        self._request(
            "PATCH",
            f"{base}/api/v1/nodes/{node}",
            deadline,
            {**headers, "Content-Type": "application/strategic-merge-patch+json"},
            json={"spec": {"unschedulable": on}},
        )
        return {"node": node, "unschedulable": on}


def _in_time(deadline: Deadline, what: str) -> None:
    if deadline.stopped:
        raise ActionTimedOut(f"{what}: the run was cancelled or the step gave up")
    if deadline.over:
        raise ActionTimedOut(f"{what}: the step's {deadline.seconds:g}s ran out")


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):
            if key in body:
                value = body[key]
                return value.get("message", str(value)) if isinstance(value, dict) else str(value)
    return str(body)[:500]
