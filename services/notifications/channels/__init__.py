"""Delivery channels. A send either returns the provider's message id or raises
`TransientSendError` (worth retrying) or `PermanentSendError` (never retried)."""

from __future__ import annotations


class SendError(Exception):
    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code  # short machine code, safe for logs and events (no addresses)


class TransientSendError(SendError):
    """Timeouts, refused connections, 5xx, SMTP 4xx: try again later."""


class PermanentSendError(SendError):
    """Invalid number, unknown mailbox, rejected credentials: retrying will not help."""
