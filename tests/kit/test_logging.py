"""The kit's logging: a broker outage does not bury the log under repeated errors."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid

import structlog

from services.kit.logging import RepeatLimiter, configure_logging


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_repeated_library_errors_pass_once_per_window_with_the_count_held_back() -> None:
    clock = Clock()
    limiter = RepeatLimiter(("aiokafka",), window=30.0, monotonic=clock)
    template = "Unable connect to node with id %s: %s"
    passed = []
    for second in range(0, 61):
        clock.now = float(second)
        for node in (1, 2):
            rec = record("aiokafka.client", template, node, "refused")
            if limiter.filter(rec):
                passed.append((second, rec.getMessage()))
    # 122 attempts over 61 s: the first at 0 s, one at 30 s and one at 60 s.
    assert [second for second, _ in passed] == [0, 30, 60]
    assert passed[0][1] == "Unable connect to node with id 1: refused"
    assert passed[1][1].endswith("[59 more like this held back in 30 s]")
    assert passed[2][1].endswith("[59 more like this held back in 30 s]")


def test_other_templates_and_the_products_own_loggers_are_never_held_back() -> None:
    clock = Clock()
    limiter = RepeatLimiter(("aiokafka",), monotonic=clock)
    assert limiter.filter(record("aiokafka.client", "Unable to update metadata from %s", 1))
    assert limiter.filter(record("aiokafka.consumer", "Failed fetch messages from %s", 1))
    assert not limiter.filter(record("aiokafka.client", "Unable to update metadata from %s", 2))
    for _ in range(5):
        assert limiter.filter(record("services.kit.outbox", "relay could not publish"))


def test_the_configured_handler_holds_back_repeated_kafka_errors() -> None:
    configure_logging("INFO")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    # A template of its own: the filter is the process's, other tests log through it.
    template = f"Unable connect to node {uuid.uuid4().hex} with id %s: %s"
    out = io.StringIO()
    stream = handler.setStream(out)
    try:
        for _ in range(50):
            logging.getLogger("aiokafka.client").error(template, 7, "refused")
    finally:
        handler.setStream(stream)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [template % (7, "refused")]
    assert lines[0]["level"] == "error"


def test_the_kits_503_line_is_held_back_too_with_the_count_in_the_event() -> None:
    """While the database is down every request logged "answered 503": thousands of
    lines a minute. structlog's records carry their event dict as the message."""
    configure_logging("INFO")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    limiter = next(f for f in handler.filters if isinstance(f, RepeatLimiter))
    clock = Clock()
    limiter.monotonic = clock
    limiter._seen.clear()
    log = structlog.stdlib.get_logger("services.kit.http")
    out = io.StringIO()
    stream = handler.setStream(out)
    try:
        for _ in range(40):
            log.warning("dependency unavailable; answered 503", error="ConnectionRefusedError")
        clock.now = 31.0
        log.warning("dependency unavailable; answered 503", error="ConnectionRefusedError")
    finally:
        handler.setStream(stream)
        limiter.monotonic = time.monotonic
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["dependency unavailable; answered 503"] * 2
    assert "held_back" not in lines[0]
    assert lines[1]["held_back"] == 39
