import logging

import pytest

from vigil.logs import KeyValueFormatter, RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def captured() -> tuple[logging.Logger, list[str], Clock]:
    lines: list[str] = []
    clock = Clock()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(RepeatFilter(limit=3, interval_s=10, clock=clock))
    logger = logging.getLogger("tests.repeat")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, lines, clock


def test_a_repeated_error_is_logged_n_times_per_interval_then_counted(captured) -> None:
    logger, lines, clock = captured
    for _ in range(1000):
        logger.error("socket.accept() out of system resource")
    assert len(lines) == 3
    clock.now = 11
    logger.error("socket.accept() out of system resource")
    assert len(lines) == 5
    assert "event=log_suppressed" in lines[3] and "suppressed=997" in lines[3]
    assert 'message="socket.accept() out of system resource"' in lines[3]
    assert "socket.accept()" in lines[4]


def test_different_messages_and_info_lines_are_not_limited(captured) -> None:
    logger, lines, _ = captured
    for i in range(5):
        logger.warning("first")
        logger.warning("second")
        logger.info("progress %d", i)
    assert sum("first" in line for line in lines) == 3
    assert sum("second" in line for line in lines) == 3
    assert sum("progress" in line for line in lines) == 5


def test_setup_quiets_per_request_and_per_job_info_but_keeps_their_warnings() -> None:
    from vigil.logs import setup

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup(logging.INFO)
        for name in ("httpx", "apscheduler.executors.default", "apscheduler.scheduler"):
            logger = logging.getLogger(name)
            assert not logger.isEnabledFor(logging.INFO), name
            assert logger.isEnabledFor(logging.WARNING), name
        assert logging.getLogger("alerting.evaluator").isEnabledFor(logging.INFO)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
