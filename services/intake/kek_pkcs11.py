"""Key-encryption keys on a PKCS#11 token (`ENLACE_KEK_PROVIDER=pkcs11`; see keks.py).

Each version is an AES-256 secret key object on the token labelled `enlace-kek-<n>`,
made there by the token (C_GenerateKey) as a token object that is private (only a
logged-in user sees it), sensitive and not extractable, able to encrypt and decrypt
and nothing else (no wrap, unwrap, sign, derive). So the key material never exists
outside the token: no C_GetAttributeValue can read CKA_VALUE, no C_WrapKey can export
it, and this process only ever holds a handle. Locally the token is SoftHSM2 (made by
deploy/local/softhsm.sh); in production an HSM behind the same interface.

Wrapping is the token's AES-GCM with a 96-bit nonce we draw from os.urandom and a
128-bit tag; a blob is nonce || ciphertext || tag, the layout of keks.seal_with.

One logged-in read/write session lives as long as the object (`close()` ends it; the
login itself is shared by the providers of one process, see `_Login`), and key
handles are cached per version. Versions made or destroyed by another process
(`keys rotate`, `keys retire`) are seen: `versions()` always asks the token, and a
cached handle the token no longer knows is looked up again once.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.exceptions import (
    EncryptedDataInvalid,
    EncryptedDataLenRange,
    GeneralError,
    KeyHandleInvalid,
    MultipleTokensReturned,
    NoSuchToken,
    ObjectHandleInvalid,
    PinIncorrect,
    PinLenRange,
)
from pkcs11.mechanisms import GCMParams

from services.intake.keks import KEY_BYTES, NONCE_BYTES, KeyUnavailable, UnwrapFailed

LABEL_PREFIX = "enlace-kek-"
TAG_BITS = 128
_LABEL = re.compile(r"^enlace-kek-([0-9]{1,9})$")
# How many times create() tries again when another process took the same version.
_CREATE_ATTEMPTS = 8

# The key's whole template: a token object, readable by nobody, usable for one thing.
_KEY_TEMPLATE: dict[Attribute, object] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
    Attribute.ENCRYPT: True,
    Attribute.DECRYPT: True,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.DERIVE: False,
}

# SoftHSM2 answers a GCM tag mismatch with CKR_GENERAL_ERROR (the standard says
# CKR_ENCRYPTED_DATA_INVALID); other tokens use the others.
_AUTH_FAILURES = (GeneralError, EncryptedDataInvalid, EncryptedDataLenRange)
_STALE_HANDLE = (ObjectHandleInvalid, KeyHandleInvalid)


class _AesKey(Protocol):
    """What we use of python-pkcs11's runtime SecretKey (its stubs leave encrypt and
    decrypt off SecretKey and type their results as bytes | Iterator[bytes])."""

    def __getitem__(self, key: Attribute) -> object: ...

    def encrypt(
        self, data: bytes, *, mechanism: Mechanism, mechanism_param: GCMParams
    ) -> bytes: ...

    def decrypt(
        self, data: bytes, *, mechanism: Mechanism, mechanism_param: GCMParams
    ) -> bytes: ...

    def destroy(self) -> None: ...


def _as_key(obj: object) -> _AesKey:
    return cast(_AesKey, obj)


# Process-wide PKCS#11 state. A module reads SOFTHSM2_CONF once, at C_Initialize, and
# the login state of a token belongs to the process, not to a session: a second
# C_Login fails (CKR_USER_ALREADY_LOGGED_IN) and any C_Logout logs out every session.
# So per (module, token) one logged-in session anchors the login while any provider
# is open; each provider works in a session of its own, which shares that login and
# never logs out.
@dataclass
class _Login:
    anchor: pkcs11.Session
    users: int


_loaded_conf: dict[str, str | None] = {}
_logins: dict[tuple[str, str], _Login] = {}
_state_lock = threading.Lock()


def _in_use(module: str) -> bool:
    return any(key[0] == module for key in _logins)


def _open_session(
    module: str, token_label: str, pin: str, softhsm_conf: Path | None
) -> pkcs11.Session:
    """A read/write session on the token, logged in (by this call or an earlier one)."""
    with _state_lock:
        conf = str(softhsm_conf) if softhsm_conf is not None else os.environ.get("SOFTHSM2_CONF")
        if module in _loaded_conf and _loaded_conf[module] != conf:
            if _in_use(module):
                raise KeyUnavailable(
                    f"PKCS#11 module {module} is in use with SOFTHSM2_CONF={_loaded_conf[module]};"
                    f" close its providers before opening one with {conf}"
                )
            pkcs11.unload(module)
        if softhsm_conf is not None:
            os.environ["SOFTHSM2_CONF"] = str(softhsm_conf)
        lib = pkcs11.lib(module)
        _loaded_conf[module] = conf
        try:
            token = lib.get_token(token_label=token_label)
            login = _logins.get((module, token_label))
            if login is None:
                login = _Login(token.open(rw=True, user_pin=pin), 0)
            try:
                session = token.open(rw=True)
            except BaseException:
                if login.users == 0:
                    login.anchor.close()
                raise
        except (NoSuchToken, MultipleTokensReturned) as exc:
            raise KeyUnavailable(
                f"no single PKCS#11 token labelled {token_label!r} in {module}"
            ) from exc
        except (PinIncorrect, PinLenRange) as exc:
            raise KeyUnavailable(f"the PIN of PKCS#11 token {token_label!r} is wrong") from exc
        login.users += 1
        _logins[(module, token_label)] = login
        return session


def _close_session(module: str, token_label: str, session: pkcs11.Session) -> None:
    with _state_lock:
        try:
            session.close()
        finally:
            login = _logins[(module, token_label)]
            login.users -= 1
            if login.users == 0:
                del _logins[(module, token_label)]
                login.anchor.close()  # C_Logout, then C_CloseSession


class Pkcs11Keys:
    """KEKs on a PKCS#11 token: AES-256 keys `enlace-kek-<n>` that never leave it."""

    provider = "pkcs11"

    def __init__(
        self,
        module: str,
        token_label: str,
        pin: str,
        *,
        softhsm_conf: Path | None = None,
        create_first: bool = False,
    ) -> None:
        """Log in to the token labelled `token_label` through the PKCS#11 `module`
        (a .so path) and keep that session open until `close()`. `softhsm_conf` sets
        SOFTHSM2_CONF for the process before the module is loaded."""
        self.module = module
        self.token_label = token_label
        self._lock = threading.RLock()
        self._handles: dict[int, _AesKey] = {}
        self._session: pkcs11.Session | None = _open_session(module, token_label, pin, softhsm_conf)
        if create_first and not self.versions():
            self.create()

    def __enter__(self) -> Pkcs11Keys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session, and log out when no other provider of this process is open
        on the token (the keys stay on the token)."""
        with self._lock:
            if self._session is None:
                return
            self._handles.clear()
            session, self._session = self._session, None
            _close_session(self.module, self.token_label, session)

    @property
    def session(self) -> pkcs11.Session:
        if self._session is None:
            raise KeyUnavailable(f"PKCS#11 token {self.token_label!r}: provider closed")
        return self._session

    def _find(self, label: str | None = None) -> list[tuple[int, _AesKey]]:
        """The AES secret keys `enlace-kek-<n>` on the token (one label, or all)."""
        attrs: dict[Attribute, object] = {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.AES,
        }
        if label is not None:
            attrs[Attribute.LABEL] = label
        found = []
        with self._lock:
            for obj in self.session.get_objects(attrs):
                match = _LABEL.match(str(obj[Attribute.LABEL]))
                if match:
                    found.append((int(match.group(1)), _as_key(obj)))
        return found

    def versions(self) -> list[int]:
        return sorted({version for version, _ in self._find()})

    def create(self) -> int:
        """Have the token generate version max+1 and return it.

        Labels are not unique on a token, so two processes may both pick n: after
        generating, whoever sees another key labelled n destroys its own and tries
        n+1 (of two racing creators, at most one keeps n; maybe neither, and both
        try again).
        """
        with self._lock:
            for _ in range(_CREATE_ATTEMPTS):
                version = max(self.versions(), default=0) + 1
                label = f"{LABEL_PREFIX}{version}"
                key = _as_key(
                    self.session.generate_key(
                        KeyType.AES,
                        KEY_BYTES * 8,
                        label=label,
                        id=os.urandom(16),
                        store=True,
                        capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                        template=dict(_KEY_TEMPLATE),
                    )
                )
                if len(self._find(label)) == 1:
                    self._handles[version] = key
                    return version
                key.destroy()
            raise KeyUnavailable(
                f"could not create a KEK on token {self.token_label!r}: "
                f"{_CREATE_ATTEMPTS} attempts raced with other processes"
            )

    def destroy(self, version: int) -> None:
        """Destroy every object labelled `enlace-kek-<version>` on the token."""
        with self._lock:
            self._handles.pop(version, None)
            for _, key in self._find(f"{LABEL_PREFIX}{version}"):
                key.destroy()

    def _key(self, version: int, *, fresh: bool = False) -> _AesKey:
        with self._lock:
            key = None if fresh else self._handles.get(version)
            if key is None:
                found = self._find(f"{LABEL_PREFIX}{version}")
                if not found:
                    self._handles.pop(version, None)
                    raise KeyUnavailable(
                        f"KEK pkcs11:{version} is not on token {self.token_label!r}"
                    )
                if len(found) > 1:
                    raise KeyUnavailable(
                        f"KEK pkcs11:{version} is ambiguous on token {self.token_label!r}"
                        f" ({len(found)} keys labelled {LABEL_PREFIX}{version})"
                    )
                key = found[0][1]
                self._handles[version] = key
            return key

    def encrypt(self, version: int, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        params = GCMParams(nonce, aad, TAG_BITS)
        try:
            sealed = self._key(version).encrypt(
                plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=params
            )
        except _STALE_HANDLE:
            # Destroyed or replaced by another process since we cached it.
            sealed = self._key(version, fresh=True).encrypt(
                plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=params
            )
        return nonce + sealed

    def decrypt(self, version: int, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < NONCE_BYTES + TAG_BITS // 8:
            raise UnwrapFailed("ciphertext too short to hold a nonce and a tag")
        params = GCMParams(blob[:NONCE_BYTES], aad, TAG_BITS)
        sealed = blob[NONCE_BYTES:]
        try:
            try:
                return self._key(version).decrypt(
                    sealed, mechanism=Mechanism.AES_GCM, mechanism_param=params
                )
            except _STALE_HANDLE:
                return self._key(version, fresh=True).decrypt(
                    sealed, mechanism=Mechanism.AES_GCM, mechanism_param=params
                )
        except _AUTH_FAILURES:
            raise UnwrapFailed("ciphertext does not open under this key and context") from None
