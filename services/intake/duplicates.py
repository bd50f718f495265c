"""Possible duplicates: a case registered with the same normalised name, birth date and
region as another agency's case is flagged, never merged. Who matched whom stays in
intake: the registering agency and the shared topic learn only that a match exists
(`possible_duplicate`); the operations (coordination) role alone reads the pairs,
for reconciliation, as case ids, references, agencies and registration times, never
a name or any other identifying detail.

The list reads newest first, by keyset: a cursor is the (registered_at, case_id) of
the last case of a page, opaque to the caller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from contracts.events import CaseCreatedV1
from services.kit import cursor

CURSOR_FIELD = "query.cursor"


def shared_event(event: CaseCreatedV1, matched: list[UUID]) -> CaseCreatedV1:
    """The case.created event as it goes on the shared topic: the flag alone, the
    deprecated `possible_duplicate_of` always empty."""
    return event.model_copy(
        update={"possible_duplicate": bool(matched), "possible_duplicate_of": []}
    )


@dataclass(frozen=True)
class CaseRef:
    """A case as coordination sees it: who registered it and when, no child's details."""

    case_id: UUID
    reference: str
    registering_agency_id: str
    registered_at: datetime


@dataclass(frozen=True)
class PossibleDuplicate:
    case: CaseRef  # the case flagged when it was registered
    matches: list[CaseRef]  # the other agencies' cases it matched, oldest first


@dataclass(frozen=True)
class Position:
    """Where a page ended: the list goes on with older cases."""

    registered_at: datetime
    case_id: UUID

    @classmethod
    def after(cls, case: CaseRef) -> Position:
        return cls(case.registered_at, case.case_id)


@dataclass(frozen=True)
class Page:
    items: list[PossibleDuplicate]
    next: Position | None  # None: this is the last page


def encode_cursor(position: Position) -> str:
    return cursor.encode_cursor(position.registered_at, position.case_id)


def decode_cursor(token: str) -> Position:
    """The position a cursor of `encode_cursor` names; anything else is `InvalidField`."""
    return Position(*cursor.decode_cursor(token, CURSOR_FIELD))
