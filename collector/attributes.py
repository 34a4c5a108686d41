"""Attribute sets as the exporter stores them, and the byte-bounded cache that shares them."""

from __future__ import annotations

import json
from base64 import b64encode
from collections import OrderedDict
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from collector.limits import Limits

_serialize_kv = KeyValue.SerializeToString
# Rough CPython cost of the objects behind one cached attribute and one cache entry, beyond the
# text itself: the wire bytes object, two str objects, dict and tuple slots.
_PER_ATTRIBUTE_BYTES = 170
_PER_ENTRY_BYTES = 300


def any_value(value: Any) -> str:
    """AnyValue as the exporter stores it: strings as-is, scalars as text, lists and maps as JSON."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return ""
    return (
        json.dumps(_plain(value), separators=(",", ":"))
        if kind in ("array_value", "kvlist_value")
        else (_scalar_text(value, kind))
    )


def _scalar_text(value: Any, kind: str) -> str:
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    if kind == "bytes_value":
        return b64encode(value.bytes_value).decode()
    return ""


def _plain(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return b64encode(value.bytes_value).decode()
    return None


def attribute_pairs(kvs: Any, limits: Limits) -> list[tuple[str, str]] | None:
    """`(key, value)` text pairs, or None when the set breaks a limit (checked before any JSON work)."""
    if len(kvs) > limits.max_attributes:
        return None
    pairs = []
    for kv in kvs:
        if len(kv.key) > limits.max_key_length:
            return None
        value = any_value(kv.value)
        if len(value) > limits.max_value_length:
            return None
        pairs.append((kv.key, value))
    return pairs


class AttributeCache:
    """Sorted attribute maps, built once per distinct attribute set and shared between rows.

    The key is each KeyValue's wire encoding as sent (one C call per attribute, no Python per
    value); the value is the sorted dict with a hash of its content (the series identity).
    Bounded in bytes (keys and values counted): the oldest sets are evicted first. A set that
    breaks a limit is never cached, so refused points cost no memory after their request.
    """

    def __init__(self, limits: Limits, capacity_bytes: int | None = None) -> None:
        self.limits = limits
        self.capacity_bytes = limits.attribute_cache_bytes if capacity_bytes is None else capacity_bytes
        self.bytes = 0
        self._maps: OrderedDict[tuple[bytes, ...], tuple[tuple[dict[str, str], int], int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._maps)

    def get(self, kvs: Any) -> tuple[dict[str, str], int] | None:
        key = tuple(map(_serialize_kv, kvs))
        cached = self._maps.get(key)
        if cached is not None:
            return cached[0]
        pairs = attribute_pairs(kvs, self.limits)
        if pairs is None:
            return None
        ordered = tuple(sorted(pairs))
        built = (dict(ordered), hash(ordered))
        size = (
            _PER_ENTRY_BYTES
            + sum(map(len, key))
            + sum(len(k) + len(v) for k, v in pairs)
            + _PER_ATTRIBUTE_BYTES * len(pairs)
        )
        if size > self.capacity_bytes:
            return built
        while self.bytes + size > self.capacity_bytes:
            _, (_, evicted) = self._maps.popitem(last=False)
            self.bytes -= evicted
        self._maps[key] = (built, size)
        self.bytes += size
        return built
