"""Key-encryption keys: what wraps each case's data key (services/intake/sealing.py).

One interface, `KeyEncryptionKeys`, two providers chosen by `ENLACE_KEK_PROVIDER`:

- `file`: AES-256 keys in files of a directory (`kek-<n>.key`, 0600; the directory
  0700). The local profile makes the first one at first start under `.local/secrets/`;
  production never makes one (it must be provisioned, and the service refuses to
  start without it).
- `pkcs11`: AES-256 keys that never leave a PKCS#11 token (SoftHSM2 locally, an HSM
  in production), labelled `enlace-kek-<n>` (services/intake/kek_pkcs11.py).

A KEK has a version `<provider>:<n>`; the highest `n` is current and wraps new data
keys. Rotation (`python -m services.intake keys rotate`) creates version n+1 and
re-wraps every data key under it without touching the sealed data; an old version
is destroyed (`keys retire`) only once no data key refers to it.

Wrapping is AES-256-GCM with a random 96-bit nonce, the wrapped key bound to its
case by associated data: a wrapped key copied to another case does not unwrap.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32
# How long a process trusts its idea of the current version: a rotation made by
# another process is followed within this bound (keys still on an older version
# are re-wrapped by the next `keys rotate`, and `keys retire` refuses while any is).
CURRENT_TTL_SECONDS = 5.0


class KeyUnavailable(RuntimeError):
    """A KEK version is missing (retired, or never provisioned here)."""


class UnwrapFailed(RuntimeError):
    """A wrapped data key does not open with its KEK and context: tampered, or moved."""


@dataclass(frozen=True)
class WrappedKey:
    kek_version: str  # "<provider>:<n>"
    blob: bytes  # nonce || ciphertext || tag


class KeyEncryptionKeys(Protocol):
    """The KEKs of one provider."""

    provider: str

    def versions(self) -> list[int]:
        """Every version this provider holds, oldest first."""
        ...

    def create(self) -> int:
        """Make version max+1 (the new current one) and return it."""
        ...

    def destroy(self, version: int) -> None:
        """Destroy one version for good."""
        ...

    def encrypt(self, version: int, plaintext: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, version: int, blob: bytes, aad: bytes) -> bytes: ...


class KekRing:
    """Wraps and unwraps data keys with a provider's KEKs, the current one for new
    keys. Keeps its idea of the current version for `CURRENT_TTL_SECONDS`."""

    def __init__(self, keys: KeyEncryptionKeys) -> None:
        self.keys = keys
        self._current: tuple[int, float] | None = None

    @property
    def provider(self) -> str:
        return self.keys.provider

    def version_id(self, version: int) -> str:
        return f"{self.keys.provider}:{version}"

    def parse_version(self, kek_version: str) -> int:
        provider, _, number = kek_version.partition(":")
        if provider != self.keys.provider or not number.isdigit():
            raise KeyUnavailable(f"KEK {kek_version} is not one of provider {self.provider}")
        return int(number)

    def current(self) -> int:
        now = time.monotonic()
        if self._current is None or now - self._current[1] > CURRENT_TTL_SECONDS:
            versions = self.keys.versions()
            if not versions:
                raise KeyUnavailable(f"no key-encryption key in provider {self.provider}")
            self._current = (versions[-1], now)
        return self._current[0]

    def forget_current(self) -> None:
        self._current = None

    def wrap(self, data_key: bytes, context: bytes, version: int | None = None) -> WrappedKey:
        version = self.current() if version is None else version
        return WrappedKey(self.version_id(version), self.keys.encrypt(version, data_key, context))

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        return self.keys.decrypt(self.parse_version(wrapped.kek_version), wrapped.blob, context)


def seal_with(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_with(key: bytes, blob: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        raise UnwrapFailed("ciphertext does not open under this key and context") from None


_KEY_FILE = re.compile(r"^kek-([0-9]{1,9})\.key$")


class FileKeys:
    """KEKs in files: `<directory>/kek-<n>.key`, 32 random bytes each, mode 0600."""

    provider = "file"

    def __init__(self, directory: Path, *, create_first: bool) -> None:
        self.directory = directory
        self._cache: dict[int, bytes] = {}
        if create_first and not self.versions():
            self.create()

    def versions(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        found = (_KEY_FILE.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def _path(self, version: int) -> Path:
        return self.directory / f"kek-{version}.key"

    def create(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        while True:
            version = max(self.versions(), default=0) + 1
            tmp = self.directory / f".kek-{version}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(os.urandom(KEY_BYTES))
            try:
                os.link(tmp, self._path(version))  # fails if another process won
            except FileExistsError:
                continue
            finally:
                tmp.unlink()
            return version

    def destroy(self, version: int) -> None:
        self._cache.pop(version, None)
        path = self._path(version)
        with contextlib.suppress(FileNotFoundError):
            # Overwrite before unlinking: on a plain file system that is the best a
            # file can do (an HSM destroys keys properly; see README).
            size = path.stat().st_size
            with path.open("r+b") as out:
                out.write(os.urandom(size))
                out.flush()
                os.fsync(out.fileno())
            path.unlink()

    def _key(self, version: int) -> bytes:
        key = self._cache.get(version)
        if key is None:
            try:
                key = self._path(version).read_bytes()
            except FileNotFoundError:
                raise KeyUnavailable(f"KEK file:{version} is not in {self.directory}") from None
            if len(key) != KEY_BYTES:
                raise KeyUnavailable(f"KEK file:{version} is not a {KEY_BYTES}-byte key")
            self._cache[version] = key
        return key

    def encrypt(self, version: int, plaintext: bytes, aad: bytes) -> bytes:
        return seal_with(self._key(version), plaintext, aad)

    def decrypt(self, version: int, blob: bytes, aad: bytes) -> bytes:
        return open_with(self._key(version), blob, aad)
