"""Possible duplicates: a case registered with the same normalised name, birth date and
region as another agency's case is flagged, never merged. The match is on a keyed
hash (HMAC-SHA256 under intake's identity hash key) of those three: the database
holds no name, and without the key nobody can test a guess against it. Who matched whom stays in
intake: the registering agency and the shared topic learn only that a match exists
(`possible_duplicate`); the operations (coordination) role alone reads the pairs,
for reconciliation, as case ids, references, agencies and registration times, never
a name or any other identifying detail.

The list reads newest first, by keyset: a cursor is the (registered_at, case_id) of
the last case of a page, opaque to the caller."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from contracts.events import CaseCreatedV1
from services.kit import cursor

if TYPE_CHECKING:
    from services.intake.domain import CaseRegistration

CURSOR_FIELD = "query.cursor"


def normalise_name(*parts: str | None) -> str:
    """Case-, accent- and order-insensitive name key ("José  PÉREZ" == "perez jose")."""
    text = " ".join(p for p in parts if p)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    tokens = re.findall(r"[a-z0-9]+", text)
    return " ".join(sorted(tokens))


def duplicate_basis(reg: CaseRegistration) -> str | None:
    """What two registrations of the same child share: normalised name, birth date and
    region. Only with an exact birth date; an estimated age is too loose to match on.
    Never stored: the store keeps its keyed hash (`Vault.duplicate_key`)."""
    if reg.child.birth_date is None:
        return None
    return "|".join(
        (
            normalise_name(reg.child.given_names, reg.child.family_names),
            reg.child.birth_date.isoformat(),
            reg.location.region,
        )
    )


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
