"""Property test through the real entry point into the real embedded store.

`Collector.ingest` with generated protobuf and OTLP/JSON bodies: only an IngestError escapes,
`received == accepted + rejected`, and every accepted point is stored (counted in the tables).
"""

import itertools
from pathlib import Path

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from collector import decode
from collector.errors import IngestError
from collector.service import Collector
from tests.otlp_strategies import NOW, requests
from vigil.settings import Settings
from vigil.store import Store
from vigil.store.schema import METRIC_TABLES


def stored_rows(store: Store) -> int:
    return sum(store.query_rows(f"SELECT count() FROM {t}")[0][0] for t in METRIC_TABLES)


@pytest.mark.heavy
def test_every_accepted_point_round_trips_into_the_store(clean_store: Store, tmp_path: Path) -> None:
    collector = Collector(Settings(data=tmp_path, batch_wait_ms=0), clean_store, CollectorRegistry(), clock=lambda: NOW)
    collector.start()
    keys = itertools.count()
    expected = [0]

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(requests(), st.sampled_from([decode.PROTOBUF, decode.JSON]))
    def check(request, media: str) -> None:
        body = request.SerializeToString() if media == decode.PROTOBUF else json_format.MessageToJson(request).encode()
        try:
            conversion, future = collector.ingest(body, media, None, f"fuzz-{next(keys)}")
        except IngestError:
            return
        assert conversion.received == conversion.accepted + sum(conversion.rejected.values())
        if future is not None:
            assert future.result(30).stored == conversion.accepted
            expected[0] += conversion.accepted

    try:
        check()
    finally:
        collector.close()
    assert expected[0] > 0, "the strategies reach the store"
    assert stored_rows(clean_store) == expected[0]
    assert collector.pipeline.wal.batch_ids() == [] and not list((tmp_path / "wal").glob("*.refused"))
