"""JSON logs through structlog, bound to event id, case id and trace id.

Never a child's personal data: a processor drops any key that names one, so a
careless `log.info(..., name=...)` cannot leak it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

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


_configured = False


def configure_logging(level: str = "INFO") -> None:
    """Idempotent; routes the standard library's loggers (aiokafka, uvicorn) to JSON too."""
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
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(formatter)
        root.handlers = [handler]
        _configured = True
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "faststream"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)  # type: ignore[no-any-return]
