"""What any text or instant a caller sends must be, before a use case sees it.

Text never carries control characters: NUL would be refused by PostgreSQL deep in a
transaction, and the rest (escape sequences, C1 controls, lone surrogates, which
cannot even be encoded as UTF-8) have no place in a name or a reason. A line break is
allowed only in free text a person types on several lines (`MultiLineText`), never
in a name, a code or an address (`LineText`). The refusal names the code point and
its position, never echoes the text.

An instant is bounded to the years 1900-2100 while it still carries the caller's
offset: beyond those, converting it to UTC overflows (`0001-01-01T00:00:00+14:00`).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

# C0 and C1 controls and DEL, lone surrogates, and the Unicode line and paragraph
# separators. A multi-line text admits tab, line feed and carriage return.
_SINGLE_LINE_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_MULTI_LINE_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

# The same rules as JSON Schema patterns (ECMA-262), so that the OpenAPI says them.
SINGLE_LINE_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"
MULTI_LINE_PATTERN = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"

EARLIEST_YEAR = 1900
LATEST_YEAR = 2100


def forbidden_character(text: str, *, multiline: bool = True) -> tuple[int, str] | None:
    """The position and code point (U+XXXX) of the first character `text` may not
    hold, or None."""
    pattern = _MULTI_LINE_FORBIDDEN if multiline else _SINGLE_LINE_FORBIDDEN
    found = pattern.search(text)
    if found is None:
        return None
    return found.start(), f"U+{ord(found.group()):04X}"


def control_character_message(position: int, code_point: str, *, multiline: bool) -> str:
    allowed = "" if multiline else "; this field takes one line"
    return (
        f"must not contain control characters (found {code_point} at position {position}{allowed})"
    )


def _plain(multiline: bool) -> AfterValidator:
    def check(text: str) -> str:
        found = forbidden_character(text, multiline=multiline)
        if found is not None:
            raise PydanticCustomError(
                "control_character",
                control_character_message(*found, multiline=multiline),
            )
        return text

    return AfterValidator(check)


LineText = Annotated[
    str, _plain(multiline=False), Field(json_schema_extra={"pattern": SINGLE_LINE_PATTERN})
]
"""Text on one line: a name, a district, a document number."""

MultiLineText = Annotated[
    str, _plain(multiline=True), Field(json_schema_extra={"pattern": MULTI_LINE_PATTERN})
]
"""Free text a person may type on several lines: a reason, a note."""


def instant_problem(moment: date) -> str | None:
    """Why an instant or a day is out of range, or None; for a value parsed outside a
    model (a cursor) too."""
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        return f"must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}"
    return None


def _in_range(kind: str) -> AfterValidator:
    def check(moment: date) -> date:
        problem = instant_problem(moment)
        if problem is not None:
            raise PydanticCustomError(f"{kind}_out_of_range", problem)
        return moment

    return AfterValidator(check)


Instant = Annotated[datetime, _in_range("instant")]
"""A moment between the years 1900 and 2100 (in the offset it was given in)."""

Day = Annotated[date, _in_range("date")]
"""A calendar day between the years 1900 and 2100."""
