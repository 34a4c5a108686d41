"""PID → cgroup → container, GPU → pod from a real gRPC pod-resources server, and the control endpoint."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from gpu_agent.attribution import Attribution, messages, parse_cgroup
from gpu_agent.control import ControlServer
from gpu_agent.simulated import SimulatedBackend
from vigil import names as n

CID = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("cgroup", "expected"),
    [
        (  # cgroup v2, systemd driver, containerd
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9a8b7c6d_1e2f_4a5b_8c9d_0e1f2a3b4c5d"
            f".slice/cri-containerd-{CID}.scope",
            {n.CONTAINER_ID: CID, n.K8S_POD_UID: "9a8b7c6d-1e2f-4a5b-8c9d-0e1f2a3b4c5d"},
        ),
        (  # cgroup v1, cgroupfs driver
            f"12:memory:/kubepods/burstable/pod9a8b7c6d-1e2f-4a5b-8c9d-0e1f2a3b4c5d/{CID}\n11:cpu:/kubepods/x",
            {n.CONTAINER_ID: CID, n.K8S_POD_UID: "9a8b7c6d-1e2f-4a5b-8c9d-0e1f2a3b4c5d"},
        ),
        (f"0::/system.slice/docker-{CID}.scope", {n.CONTAINER_ID: CID}),  # plain Docker
        (f"0::/machine.slice/libpod-{CID}.scope/container", {n.CONTAINER_ID: CID}),  # Podman
        ("0::/user.slice/user-1000.slice/session-2.scope", {}),  # not in a container
    ],
)
def test_cgroup_paths_name_the_container_and_pod(cgroup: str, expected: dict[str, str]) -> None:
    assert parse_cgroup(cgroup) == expected


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[Path]:
    """A gRPC server on a unix socket answering PodResourcesLister/List like a kubelet."""
    request_cls, response_cls = messages()
    socket = tmp_path / "kubelet.sock"

    def list_pods(request: Any, context: Any) -> Any:
        response = response_cls()
        pod = response.pod_resources.add(name="llama-0", namespace="serving")
        container = pod.containers.add(name="vllm")
        container.devices.add(resource_name="nvidia.com/gpu", device_ids=["GPU-aaa", "GPU-bbb"])
        container.devices.add(resource_name="example.com/nic", device_ids=["nic-0"])
        shared = response.pod_resources.add(name="notebook", namespace="research")
        shared.containers.add(name="jupyter").devices.add(resource_name="nvidia.com/gpu", device_ids=["GPU-ccc::1"])
        return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(
        list_pods, request_deserializer=request_cls.FromString, response_serializer=response_cls.SerializeToString
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("v1.PodResourcesLister", {"List": handler}),))
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    yield socket
    server.stop(grace=None)


def test_gpus_are_attributed_to_the_pods_the_kubelet_assigned_them_to(kubelet: Path) -> None:
    attribution = Attribution(Path("/proc"), kubelet)
    attribution.refresh()
    try:
        assert attribution.gpu("GPU-aaa") == {
            n.K8S_NAMESPACE: "serving",
            n.K8S_POD: "llama-0",
            n.K8S_CONTAINER: "vllm",
        }
        assert attribution.gpu("GPU-ccc")[n.K8S_POD] == "notebook"  # a time-sliced replica "<uuid>::<n>"
        assert attribution.gpu("nic-0") == {} and attribution.gpu("GPU-zzz") == {}
    finally:
        attribution.close()


def test_without_the_socket_there_are_simply_no_pod_labels(tmp_path: Path) -> None:
    attribution = Attribution(Path("/proc"), tmp_path / "absent.sock")
    attribution.refresh()
    assert attribution.gpu("GPU-aaa") == {}


def call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_control_endpoint_injects_and_clears_simulated_faults() -> None:
    backend = SimulatedBackend(2, "node-1", seed=1)
    healthy = {"ok": True}
    server = ControlServer(
        ("127.0.0.1", 0),
        lambda: (healthy["ok"], {"status": "ok" if healthy["ok"] else "stalled"}),
        lambda: backend.report().as_dict(),
        backend,
    )
    server.start()
    try:
        assert call("GET", f"{server.url}/healthz") == (200, {"status": "ok"})
        healthy["ok"] = False
        assert call("GET", f"{server.url}/healthz")[0] == 503
        status, body = call("POST", f"{server.url}/faults", {"kind": "xid", "gpu": 1, "code": 48})
        assert status == 201 and body["fault"]["code"] == 48
        status, body = call("POST", f"{server.url}/faults", {"kind": "thermal", "gpu": 0})
        assert status == 201
        assert [f["kind"] for f in call("GET", f"{server.url}/faults")[1]["faults"]] == ["xid", "thermal"]
        status, body = call("POST", f"{server.url}/faults", {"kind": "xid", "gpu": 1})
        assert status == 400 and "code=N" in body["error"]
        status, body = call("POST", f"{server.url}/faults", {"kind": "thermal", "gpu": 9})
        assert status == 400 and "out of range" in body["error"]
        assert call("DELETE", f"{server.url}/faults") == (200, {"faults": []})
        assert call("GET", f"{server.url}/probe")[1]["backend"] == "simulated"
        assert call("GET", f"{server.url}/nope")[0] == 404
    finally:
        server.stop()


def test_real_gpus_refuse_fault_injection() -> None:
    class Real:
        simulated = False

    server = ControlServer(("127.0.0.1", 0), lambda: (True, {}), dict, Real())
    server.start()
    try:
        status, body = call("POST", f"{server.url}/faults", {"kind": "xid", "gpu": 0, "code": 79})
        assert status == 409 and "simulated backend only" in body["error"]
    finally:
        server.stop()
