"""What can go wrong with a consumed record, and how it is described: transient
(retried without committing; `services.kit.transient` decides), poison (dead-lettered
at once), or untrusted (a ce_source that is not its type's declared producer)."""

from __future__ import annotations

import pydantic

from contracts.envelope import EnvelopeError
from contracts.registry import UnknownEventType
from services.kit.transient import TransientError as TransientError  # re-exported


class PoisonEventError(Exception):
    """Raised by a handler for an event that can never be applied: dead-lettered at once."""

    error_type = ""  # the x-error-type header; the class name when empty


class UntrustedSourceError(PoisonEventError):
    """A record whose ce_source is not the one producer its type declares in contracts/:
    a forgery or a misconfigured producer. Dead-lettered, never applied."""

    error_type = "untrusted_source"


POISON = (PoisonEventError, EnvelopeError, UnknownEventType, pydantic.ValidationError)


def describe_error(exc: BaseException) -> str:
    """An error message safe to log and to put in a DLQ header: no input values."""
    if isinstance(exc, pydantic.ValidationError):
        fields = ", ".join(
            ".".join(str(p) for p in err["loc"]) + f": {err['type']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        return f"ValidationError: {fields}"[:500]
    if isinstance(exc, EnvelopeError | PoisonEventError | UnknownEventType | TransientError):
        return f"{exc.__class__.__name__}: {exc}"[:500]
    return exc.__class__.__name__  # other messages may echo data: keep only the class
