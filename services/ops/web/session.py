"""Console sessions: an operator signs in once with an operations key through a form
and then holds a session cookie; every action carries a CSRF token.

The cookie (`enlace_ops_session`: HttpOnly, SameSite=Strict, Secure outside the
local profile, Path=/console) holds `<principal>.<expires>.<csrf>.<mac>`, the MAC an
HMAC-SHA256 under the console's session key (`ENLACE_OPS_SESSION_KEY`; the local
profile generates one). Nothing is stored server-side: a session ends when it
expires (8 h) or the operator signs out (the cookie is cleared); rotating the key
ends every session at once. The API key itself never leaves the sign-in request.

CSRF: each form carries the session's token in a hidden field; a POST whose field
does not match the cookie's token (compared in constant time), or whose Origin is
another site's, is refused. SameSite=Strict already keeps the cookie off other
sites' requests; the token is the second lock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "enlace_ops_session"
LIFETIME_SECONDS = 8 * 3600


@dataclass(frozen=True)
class Session:
    principal: str
    expires: int
    csrf: str


class Sessions:
    def __init__(self, key: bytes, *, secure: bool, lifetime: int = LIFETIME_SECONDS) -> None:
        if len(key) < 32:
            raise ValueError("the console session key must be at least 32 bytes")
        self._key = key
        self.secure = secure
        self.lifetime = lifetime

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, principal: str, now: float | None = None) -> tuple[Session, str]:
        """A new session for `principal`, and its cookie value."""
        expires = int((now if now is not None else time.time()) + self.lifetime)
        session = Session(principal, expires, secrets.token_urlsafe(24))
        payload = f"{principal}.{expires}.{session.csrf}"
        return session, f"{payload}.{self._mac(payload)}"

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, or None (missing, forged, expired)."""
        if not cookie or cookie.count(".") != 3:
            return None
        principal, expires, csrf, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac(f"{principal}.{expires}.{csrf}")):
            return None
        if not expires.isdigit() or int(expires) < (now if now is not None else time.time()):
            return None
        return Session(principal, int(expires), csrf)

    @staticmethod
    def csrf_ok(session: Session, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(session.csrf, token)
