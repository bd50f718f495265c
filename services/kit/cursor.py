"""Keyset pagination cursors: the position after the last item of a page, as an
opaque token (base64url of `instant|uuid`).

A cursor the API did not hand out (not base64, not an instant and an id, an instant
without offset or out of range, not in the exact form `encode_cursor` writes) is
refused as `InvalidField` naming the parameter, before it reaches a query.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from uuid import UUID

from services.kit.errors import InvalidField
from services.kit.inputs import instant_problem

NOT_OURS = "not a cursor this API returned"


def encode_cursor(moment: datetime, item_id: UUID) -> str:
    raw = f"{moment.isoformat()}|{item_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, field: str = "query.cursor") -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment_text, item_text = raw.split("|")
        moment, item_id = datetime.fromisoformat(moment_text), UUID(item_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidField(field, NOT_OURS) from None
    if (
        moment.tzinfo is None
        or instant_problem(moment) is not None
        or encode_cursor(moment, item_id) != cursor  # only the form we hand out
    ):
        raise InvalidField(field, NOT_OURS)
    return moment, item_id
