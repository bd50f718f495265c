"""The vault: seals a new case's identity under a fresh data key wrapped by the
current KEK, opens it again with its wrapped key, re-wraps data keys on rotation,
and computes intake's keyed hashes. Built once per process from the settings
(`Vault.from_settings`); the use cases receive it.

Keyed hashes (HMAC-SHA256 under the identity hash key, a secret of its own, one
label per use): the duplicate key of a name, birth date and region, and the hash of
an idempotent request's body. Without the key, neither can be tested against a guess.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from services.intake import sealing
from services.intake.keks import KekRing, WrappedKey


@dataclass(frozen=True)
class SealedIdentity:
    sealed: sealing.Sealed
    data_key_version: int
    wrapped_key: WrappedKey


class Vault:
    def __init__(self, ring: KekRing, hash_key: bytes) -> None:
        if len(hash_key) < 32:
            raise ValueError("the identity hash key must be at least 32 bytes")
        self.ring = ring
        self._hash_key = hash_key

    def seal_new(self, case_id: UUID, identifying: dict[str, Any]) -> SealedIdentity:
        data_key = sealing.new_data_key()
        version = sealing.DATA_KEY_VERSION
        return SealedIdentity(
            sealing.seal(case_id, data_key, identifying, version),
            version,
            self.ring.wrap(data_key, sealing.key_context(case_id)),
        )

    def open(
        self, case_id: UUID, sealed: sealing.Sealed, data_key_version: int, wrapped: WrappedKey
    ) -> dict[str, Any]:
        data_key = self.ring.unwrap(wrapped, sealing.key_context(case_id))
        return sealing.unseal(case_id, data_key, sealed, data_key_version)

    def rewrap(self, case_id: UUID, wrapped: WrappedKey, kek_version: int) -> WrappedKey:
        context = sealing.key_context(case_id)
        return self.ring.wrap(self.ring.unwrap(wrapped, context), context, kek_version)

    def keyed_hash(self, label: str, data: str | bytes) -> str:
        raw = data.encode() if isinstance(data, str) else data
        return hmac.new(self._hash_key, label.encode() + b"\0" + raw, hashlib.sha256).hexdigest()

    def duplicate_key(self, basis: str | None) -> str | None:
        return None if basis is None else self.keyed_hash("duplicate", basis)

    def request_hash(self, body: bytes) -> str:
        return self.keyed_hash("idempotent-request", body)
