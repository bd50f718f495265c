"""Webhook signing secrets at rest: sealed with AES-256-GCM under the service's
webhook secrets key (`ENLACE_WEBHOOK_SECRETS_KEY`), bound to their endpoint (the
endpoint id is the associated data), so a copied column opens nowhere else. A
secret is shown to its agency once, when made; the database never holds it plain."""

from __future__ import annotations

import hashlib
import os
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# The local demo profile's key when none is given; production refuses to start
# without its own (NotificationsSettings.secret_settings).
LOCAL_PROFILE_KEY = "enlace-local-profile-webhook-secrets"


class SecretBox:
    def __init__(self, key_material: str) -> None:
        if not key_material:
            raise ValueError("a webhook secrets key is required")
        self._aead = AESGCM(hashlib.sha256(key_material.encode()).digest())

    def seal(self, endpoint_id: UUID, secret: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, secret.encode(), endpoint_id.bytes)

    def open(self, endpoint_id: UUID, sealed: bytes) -> str:
        return self._aead.decrypt(sealed[:12], sealed[12:], endpoint_id.bytes).decode()
