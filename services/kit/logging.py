"""JSON logs through structlog, bound to event id, case id and trace id.

Never a child's personal data: a processor drops any key that names one, so a
careless `log.info(..., name=...)` cannot leak it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, WrappedLogger

PII_KEYS = frozenset(
    {
        "name",
        "names",
        "first_name",
        "last_name",
        "given_name",
        "family_name",
        "surname",
        "full_name",
        "birth_date",
        "date_of_birth",
        "dob",
        "phone",
        "phone_number",
        "mobile",
        "address",
        "email",
        "document",
        "documents",
        "document_number",
        "passport",
        "guardian",
        "identity",
        "child",
        "body",
    }
)


def drop_personal_data(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    for key in list(event_dict):
        if key.lower() in PII_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


class RepeatLimiter(logging.Filter):
    """Lets one record per logger and message template through per window.

    While a broker is down aiokafka logs the same few errors for every connection
    attempt of every client: thousands of lines per outage that bury everything else.
    The first of each kind passes at once; the next one after the window says how
    many like it were held back, so the count is kept and the log stays readable.
    """

    def __init__(
        self,
        prefixes: tuple[str, ...],
        window: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window = window
        self.monotonic = monotonic
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        # structlog hands the stdlib its event dict: its "event" is the template.
        message = record.msg
        template = str(message.get("event")) if isinstance(message, dict) else str(message)
        key = (record.name, record.levelno, template)
        now = self.monotonic()
        since, held = self._seen.get(key, (-self.window, 0))
        if now - since < self.window:
            self._seen[key] = (since, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held and isinstance(message, dict):
            message["held_back"] = held
        elif held:
            record.msg = f"{message} [{held} more like this held back in {self.window:.0f} s]"
        return True


NOISY = ("aiokafka", "kafka", "faststream")
# A line per HTTP request made (every SMS sent, every callback): noise at info.
QUIET = ("httpx", "httpcore")
# Held to a line per kind per window: the Kafka client's, and the kit's "answered 503"
# (one per request while the database is down: thousands a minute).
REPEATED = (*NOISY, "services.kit.http")

_configured = False


def configure_logging(level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Idempotent; routes the standard library's loggers (aiokafka, uvicorn) to JSON too.
    Services log to standard output; a command line printing its result there logs to
    standard error (`stream=sys.stderr`)."""
    global _configured
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        drop_personal_data,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    root = logging.getLogger()
    if not _configured:
        handler = logging.StreamHandler(stream or sys.stdout)
        handler.setFormatter(formatter)
        handler.addFilter(RepeatLimiter(REPEATED))
        root.handlers = [handler]
        _configured = True
    root.setLevel(level.upper())
    for noisy in (*NOISY, *QUIET):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)  # type: ignore[no-any-return]
