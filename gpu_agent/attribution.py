"""Who uses a GPU: PID → cgroup → container id, and GPU → Kubernetes pod from the kubelet.

`/proc/<pid>/cgroup` names the container (its 64-hex id) and, under Kubernetes, the pod UID, in
every layout in use (cgroup v1 and v2, systemd and cgroupfs drivers, containerd, CRI-O, Docker,
Podman). The kubelet's pod-resources socket (gRPC `v1.PodResourcesLister/List`) names the pod,
namespace and container each device (GPU or MIG UUID) is assigned to. The agent needs host PIDs
(`hostPID: true` in its DaemonSet) for the first and the socket mounted for the second; without
them the attributes are simply absent.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigil import names as n
from vigil.logs import event

log = logging.getLogger(__name__)

DEFAULT_POD_RESOURCES_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
GPU_RESOURCES = ("nvidia.com/gpu", "nvidia.com/mig-")

_CONTAINER_ID = re.compile(r"([0-9a-f]{64})")
_POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")


def parse_cgroup(text: str) -> dict[str, str]:
    """Container id and pod UID from the contents of `/proc/<pid>/cgroup` (empty when not in a container)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        ids = _CONTAINER_ID.findall(path)
        if ids and n.CONTAINER_ID not in out:
            out[n.CONTAINER_ID] = ids[-1]
        pod = _POD_UID.search(path)
        if pod and n.K8S_POD_UID not in out:
            out[n.K8S_POD_UID] = pod.group(1).replace("_", "-")
    return out


@dataclass(frozen=True)
class Assignment:
    namespace: str
    pod: str
    container: str


class PodResources:
    """A client of the kubelet's pod-resources API over its unix socket."""

    METHOD = "/v1.PodResourcesLister/List"

    def __init__(self, socket: Path, timeout_s: float = 2.0) -> None:
        import grpc  # only where the socket exists: grpc costs memory the agent otherwise saves

        self.socket = socket
        self.timeout_s = timeout_s
        self._request, response = messages()
        self._channel = grpc.insecure_channel(f"unix://{socket}")
        self._list = self._channel.unary_unary(
            self.METHOD,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )

    def assignments(self) -> dict[str, list[Assignment]]:
        """Device id (GPU or MIG UUID) → the containers it is assigned to."""
        response = self._list(self._request(), timeout=self.timeout_s)
        out: dict[str, list[Assignment]] = {}
        for pod in response.pod_resources:
            for container in pod.containers:
                for devices in container.devices:
                    if not devices.resource_name.startswith(GPU_RESOURCES):
                        continue
                    for device_id in devices.device_ids:
                        # time-slicing plugins hand out replicas as "<uuid>::<n>"
                        key = device_id.split("::", 1)[0]
                        out.setdefault(key, []).append(Assignment(pod.namespace, pod.name, container.name))
        return out

    def close(self) -> None:
        self._channel.close()


_MESSAGES: tuple[Any, Any] | None = None


def messages() -> tuple[Any, Any]:
    """(ListPodResourcesRequest, ListPodResourcesResponse) of the kubelet's pod-resources v1 API.

    Built at run time with only the fields the agent reads: protobuf skips unknown fields, so every
    kubelet's answer decodes the same. Tests serve them from a real gRPC server."""
    global _MESSAGES
    if _MESSAGES is not None:
        return _MESSAGES
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="vigil/podresources_v1.proto", package="v1", syntax="proto3")

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        m = proto.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            added = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                added.type_name = type_name

    rep, opt = f.LABEL_REPEATED, f.LABEL_OPTIONAL
    message("ListPodResourcesRequest")
    message("ListPodResourcesResponse", ("pod_resources", 1, f.TYPE_MESSAGE, rep, ".v1.PodResources"))
    message(
        "PodResources",
        ("name", 1, f.TYPE_STRING, opt, ""),
        ("namespace", 2, f.TYPE_STRING, opt, ""),
        ("containers", 3, f.TYPE_MESSAGE, rep, ".v1.ContainerResources"),
    )
    message(
        "ContainerResources",
        ("name", 1, f.TYPE_STRING, opt, ""),
        ("devices", 2, f.TYPE_MESSAGE, rep, ".v1.ContainerDevices"),
    )
    message(
        "ContainerDevices",
        ("resource_name", 1, f.TYPE_STRING, opt, ""),
        ("device_ids", 2, f.TYPE_STRING, rep, ""),
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    _MESSAGES = (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("v1.ListPodResourcesRequest")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("v1.ListPodResourcesResponse")),
    )
    return _MESSAGES


class Attribution:
    """Process and GPU attributes, refreshed at the slow cadence."""

    def __init__(self, proc_root: Path = Path("/proc"), pod_resources_socket: Path | None = None) -> None:
        self.proc_root = proc_root
        self.socket = pod_resources_socket
        self._client: PodResources | None = None
        self._by_device: dict[str, dict[str, str]] = {}
        self._failing = ""
        self._lock = threading.Lock()

    def refresh(self) -> None:
        if self.socket is None or not self.socket.exists():
            return
        try:
            if self._client is None:
                self._client = PodResources(self.socket)
            assignments = self._client.assignments()
        except Exception as exc:  # grpc raises its own RpcError types; any failure leaves labels as they were
            if str(exc) != self._failing:
                self._failing = str(exc)
                event(log, "pod_resources_failed", level=logging.WARNING, socket=self.socket, error=self._failing)
            return
        if self._failing:
            self._failing = ""
            event(log, "pod_resources_recovered", socket=self.socket)
        by_device = {}
        for device, held in assignments.items():
            by_device[device] = {
                n.K8S_NAMESPACE: ",".join(sorted({a.namespace for a in held})),
                n.K8S_POD: ",".join(sorted({a.pod for a in held})),
                n.K8S_CONTAINER: ",".join(sorted({a.container for a in held})),
            }
        with self._lock:
            self._by_device = by_device

    def gpu(self, device_id: str) -> dict[str, str]:
        with self._lock:
            return self._by_device.get(device_id, {})

    def process(self, pid: int) -> dict[str, str]:
        attrs = {n.PROCESS_PID: str(pid)}
        base = self.proc_root / str(pid)
        # A process that ended, or a /proc without host PIDs, leaves the attributes out.
        with contextlib.suppress(OSError):
            attrs[n.PROCESS_NAME] = (base / "comm").read_text().strip()
        with contextlib.suppress(OSError):
            attrs.update(parse_cgroup((base / "cgroup").read_text()))
        return attrs

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
