"""Errors the use cases raise. They say what went wrong in the domain's terms and
know nothing of HTTP; `services.kit.http` answers each as a problem response
(`NotFound` 404, `InvalidField` 422, `NotPermitted` 403, `Conflict` 409,
`StaleVersion` 412, `Gone` 410, `Unavailable` 503)."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A use case refused a command. `title` and `detail` are safe to show the
    caller; `extra` holds machine-readable members of the answer."""

    def __init__(self, title: str, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or title)
        self.title = title
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    """Missing, or another agency's: the two must look the same."""

    def __init__(self, what: str = "resource") -> None:
        super().__init__("Not found", f"No such {what}.")
        self.what = what


class InvalidField(DomainError):
    """One field parsed but breaks a rule."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__("Invalid request", f"Invalid fields: {field}")
        self.field = field
        self.message = message


class NotPermitted(DomainError):
    """The caller may see the object but not take this step."""


class Conflict(DomainError):
    """The object's state does not allow the command."""


class StaleVersion(DomainError):
    """The caller's If-Match names an older version."""


class Gone(DomainError):
    """The object existed and was erased for good (a child's case, on request or by
    retention): not the same answer as one that never existed."""


class Unavailable(DomainError):
    """A dependency is down; the command may succeed later."""
