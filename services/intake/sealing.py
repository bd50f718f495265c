"""How a case's identifying details are kept at rest: sealed under a data key of the
case's own, so that destroying that key makes them unrecoverable everywhere at once
(crypto-shredding), backups included once their KEK is retired.

A registration is split in two:

- what identifies a child, sealed field by field (`SEALED_FIELDS`: the child, the
  location with its district, the guardian, the consent with its best-interest
  reasoning): AES-256-GCM under the case's data key, a random 96-bit nonce per
  field, and associated data naming the case, the field and the data key's version,
  so a ciphertext copied to another case or another field does not open;
- the rest, kept plain because intake works with it and none of it names a child:
  the agency's external id, the protection codes (unaccompanied, separated,
  concerns, needs) and the caseworker, a member of the agency's staff (their
  contact is what notifications asks for).

The data key itself is stored only wrapped by a key-encryption key
(services/intake/keks.py), bound to its case the same way. Pure functions: no I/O.
"""

from __future__ import annotations

import base64
import os
from typing import Any
from uuid import UUID

import orjson

from services.intake.keks import KEY_BYTES, open_with, seal_with

SEALED_FIELDS = ("child", "location", "guardian", "consent")
# The version of a case's data key: 1 for every case today. Named in the associated
# data, so a future re-keying of cases can never confuse two keys of one case.
DATA_KEY_VERSION = 1

Sealed = dict[str, str]  # field -> base64(nonce || ciphertext || tag)


def new_data_key() -> bytes:
    return os.urandom(KEY_BYTES)


def field_context(case_id: UUID, field: str, key_version: int) -> bytes:
    return f"enlace/intake/field|{case_id}|{field}|{key_version}".encode()


def key_context(case_id: UUID) -> bytes:
    """What a wrapped data key is bound to: its case."""
    return f"enlace/intake/data-key|{case_id}".encode()


def split(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A registration (its JSON form) as (plain part, identifying part)."""
    plain = {k: v for k, v in body.items() if k not in SEALED_FIELDS}
    identifying = {k: body[k] for k in SEALED_FIELDS if body.get(k) is not None}
    return plain, identifying


def seal(case_id: UUID, data_key: bytes, identifying: dict[str, Any], key_version: int) -> Sealed:
    return {
        field: base64.b64encode(
            seal_with(data_key, orjson.dumps(value), field_context(case_id, field, key_version))
        ).decode()
        for field, value in identifying.items()
    }


def unseal(case_id: UUID, data_key: bytes, sealed: Sealed, key_version: int) -> dict[str, Any]:
    """The identifying part back; `keks.UnwrapFailed` if any field was tampered with,
    or belongs to another case, field or key version."""
    opened: dict[str, Any] = {}
    for field, blob in sealed.items():
        if field not in SEALED_FIELDS:
            raise ValueError(f"unknown sealed field {field!r}")
        raw = open_with(
            data_key, base64.b64decode(blob), field_context(case_id, field, key_version)
        )
        opened[field] = orjson.loads(raw)
    return opened


def join(plain: dict[str, Any], identifying: dict[str, Any]) -> dict[str, Any]:
    """The registration as the agency sent it (guardian null when none was given)."""
    return {**plain, "guardian": None, **identifying}
