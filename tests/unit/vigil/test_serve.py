import resource

from vigil import serve


def test_connection_limit_stays_below_half_the_descriptor_limit() -> None:
    assert serve.connection_limit(1024, 20_000) == 1024
    assert serve.connection_limit(1024, 1024) == 512
    assert serve.connection_limit(1024, 1) == 1


def test_descriptor_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
        raised = serve.raise_fd_limit()
        assert raised == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert raised == (hard if hard != resource.RLIM_INFINITY else max(256, 65536))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_refusal_written_before_any_request_is_a_whole_http_answer() -> None:
    raw = serve._raw_response(503, "Service Unavailable", "too many open connections", retry_after=1)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Retry-After: 1" in head and b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert b'"code": 14' in body


def test_time_left_reads_the_deadline_the_server_set() -> None:
    import time
    from types import SimpleNamespace

    from vigil import lifecycle

    assert lifecycle.time_left(SimpleNamespace(), default=8.0) == 8.0
    state = SimpleNamespace(shutdown_deadline=time.monotonic() + 3.0)
    assert 2.0 < lifecycle.time_left(state, default=8.0) <= 3.0
    assert lifecycle.time_left(SimpleNamespace(shutdown_deadline=time.monotonic() - 1.0), default=8.0) == 0.0


def test_what_starting_built_is_frozen_out_of_the_collector() -> None:
    """Once started, the server freezes what exists (`gc.freeze`), so a full collection walks only what
    came after, instead of the whole process in the middle of a request."""
    import asyncio
    import gc

    import uvicorn

    async def app(scope: dict, receive: object, send: object) -> None:  # never asked
        raise AssertionError(scope)

    gc.unfreeze()
    server = serve.DrainingServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off"), 1.0)

    async def run() -> int:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        frozen = gc.get_freeze_count()
        server.should_exit = True
        await task
        return frozen

    try:
        assert asyncio.run(run()) > 1000
    finally:
        gc.unfreeze()
