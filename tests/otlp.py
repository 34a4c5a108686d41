"""Builders for OTLP requests used across tests (real protobuf messages, no fakes)."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2


def set_attrs(target: Any, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        kv: KeyValue = target.add()
        kv.key = key
        if isinstance(value, bool):
            kv.value.bool_value = value
        elif isinstance(value, int):
            kv.value.int_value = value
        elif isinstance(value, float):
            kv.value.double_value = value
        else:
            kv.value.string_value = str(value)


def request_with(
    metrics: list[metrics_pb2.Metric],
    resource: dict[str, Any] | None = None,
    scope: str = "tests",
) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    set_attrs(rm.resource.attributes, resource if resource is not None else {"service.name": "tests"})
    sm = rm.scope_metrics.add()
    sm.scope.name = scope
    sm.scope.version = "1.0"
    sm.metrics.extend(metrics)
    return req


def gauge(name: str, points: list[tuple[float, dict[str, Any]]], ts: int | None = None) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name, unit="1", description=f"{name} for tests")
    now = ts or time.time_ns()
    for value, attrs in points:
        dp = metric.gauge.data_points.add()
        dp.time_unix_nano = now
        dp.as_double = value
        set_attrs(dp.attributes, attrs)
    return metric


def gauge_request(n: int, name: str = "gpu.utilization", ts: int | None = None, **resource: Any) -> bytes:
    points = [(float(i), {"gpu.index": str(i)}) for i in range(n)]
    return request_with([gauge(name, points, ts)], {"service.name": "tests", **resource}).SerializeToString()
