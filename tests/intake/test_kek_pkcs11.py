"""Pkcs11Keys against a real SoftHSM2 token.

Each test gets a token of its own: a fresh SoftHSM2 token directory and configuration
under its tmp_path, initialised with softhsm2-util and random PINs (about 20 ms), so
no test sees another's keys or a developer's. One more test opens the token the
local scripts made (deploy/local/softhsm.sh init, run by infra.sh up) with the
configuration and PIN they wrote, touching none of its keys.

SoftHSM2 missing is a failure, not a skip: `make test` must run this path.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.exceptions import AttributeSensitive

from services.intake.kek_pkcs11 import Pkcs11Keys
from services.intake.keks import (
    KEY_BYTES,
    NONCE_BYTES,
    KekRing,
    KeyUnavailable,
    UnwrapFailed,
    open_with,
)
from services.kit.local_secrets import REPO_ROOT, secret

MODULE = os.environ.get("ENLACE_KEK_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
LOCAL_CONF = REPO_ROOT / ".local" / "softhsm" / "softhsm2.conf"
LOCAL_TOKEN = "enlace-intake"
TOKEN = "enlace-test"
MISSING = "SoftHSM2 is not installed; run deploy/local/softhsm.sh install (make infra does)"


def _softhsm2_util() -> str:
    util = shutil.which("softhsm2-util")
    if util is None or not Path(MODULE).exists():
        pytest.fail(f"{MISSING}: softhsm2-util={util}, module {MODULE}", pytrace=False)
    return util


def _fresh_token(directory: Path) -> tuple[Path, str]:
    """A new SoftHSM2 token `enlace-test` in `directory`: its configuration and user PIN."""
    util = _softhsm2_util()
    tokens = directory / "tokens"
    tokens.mkdir(mode=0o700)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    pin, so_pin = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    subprocess.run(
        [util, "--init-token", "--free", "--label", TOKEN, "--so-pin", so_pin, "--pin", pin],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
    )
    return conf, pin


@pytest.fixture
def token(tmp_path: Path) -> tuple[Path, str]:
    return _fresh_token(tmp_path)


@pytest.fixture
def keys(token: tuple[Path, str]) -> Iterator[Pkcs11Keys]:
    conf, pin = token
    with Pkcs11Keys(MODULE, TOKEN, pin, softhsm_conf=conf) as provider:
        yield provider


def test_round_trip(keys: Pkcs11Keys) -> None:
    version = keys.create()
    data_key = os.urandom(KEY_BYTES)
    blob = keys.encrypt(version, data_key, b"case-1")
    assert len(blob) == NONCE_BYTES + KEY_BYTES + 16
    assert data_key not in blob
    assert keys.decrypt(version, blob, b"case-1") == data_key
    # A fresh nonce every time: the same key wrapped twice gives two blobs.
    assert keys.encrypt(version, data_key, b"case-1") != blob


def test_round_trip_through_the_ring(token: tuple[Path, str]) -> None:
    conf, pin = token
    with Pkcs11Keys(MODULE, TOKEN, pin, softhsm_conf=conf, create_first=True) as keys:
        assert keys.versions() == [1]
        ring = KekRing(keys)
        wrapped = ring.wrap(b"k" * KEY_BYTES, b"case-7")
        assert wrapped.kek_version == "pkcs11:1"
        assert ring.unwrap(wrapped, b"case-7") == b"k" * KEY_BYTES


def test_aad_of_another_case_fails(keys: Pkcs11Keys) -> None:
    version = keys.create()
    blob = keys.encrypt(version, os.urandom(KEY_BYTES), b"case-1")
    with pytest.raises(UnwrapFailed):
        keys.decrypt(version, blob, b"case-2")


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
def test_one_bit_tampered_fails(keys: Pkcs11Keys, where: str) -> None:
    version = keys.create()
    blob = bytearray(keys.encrypt(version, os.urandom(KEY_BYTES), b"case-1"))
    index = {"nonce": 0, "ciphertext": NONCE_BYTES + 3, "tag": len(blob) - 1}[where]
    blob[index] ^= 0x01
    with pytest.raises(UnwrapFailed):
        keys.decrypt(version, bytes(blob), b"case-1")


def test_truncated_blob_fails(keys: Pkcs11Keys) -> None:
    version = keys.create()
    blob = keys.encrypt(version, os.urandom(KEY_BYTES), b"case-1")
    for cut in (0, NONCE_BYTES, len(blob) - 1):
        with pytest.raises(UnwrapFailed):
            keys.decrypt(version, blob[:cut], b"case-1")


def test_versions_are_distinct_keys(keys: Pkcs11Keys) -> None:
    assert keys.versions() == []
    assert keys.create() == 1
    assert keys.create() == 2
    assert keys.versions() == [1, 2]
    blob = keys.encrypt(1, os.urandom(KEY_BYTES), b"case-1")
    with pytest.raises(UnwrapFailed):
        keys.decrypt(2, blob, b"case-1")


def test_destroyed_version_is_unavailable(keys: Pkcs11Keys) -> None:
    keys.create()
    keys.create()
    data_key = os.urandom(KEY_BYTES)
    under_1 = keys.encrypt(1, data_key, b"case-1")  # caches the handle of version 1
    under_2 = keys.encrypt(2, data_key, b"case-1")
    keys.destroy(1)
    assert keys.versions() == [2]
    with pytest.raises(KeyUnavailable):
        keys.decrypt(1, under_1, b"case-1")
    with pytest.raises(KeyUnavailable):
        keys.encrypt(1, data_key, b"case-1")
    assert keys.decrypt(2, under_2, b"case-1") == data_key
    assert keys.create() == 3


def test_missing_version_is_unavailable(keys: Pkcs11Keys) -> None:
    with pytest.raises(KeyUnavailable):
        keys.encrypt(1, b"x", b"")


def test_version_made_by_another_provider_is_seen(token: tuple[Path, str]) -> None:
    conf, pin = token
    with (
        Pkcs11Keys(MODULE, TOKEN, pin, softhsm_conf=conf) as service,
        Pkcs11Keys(MODULE, TOKEN, pin, softhsm_conf=conf) as rotator,
    ):
        assert rotator.create() == 1
        assert service.versions() == [1]
        blob = service.encrypt(1, b"d" * KEY_BYTES, b"case-1")  # service caches version 1
        assert rotator.create() == 2
        assert rotator.decrypt(1, blob, b"case-1") == b"d" * KEY_BYTES
        rotator.destroy(1)
        assert service.versions() == [2]
        with pytest.raises(KeyUnavailable):
            service.decrypt(1, blob, b"case-1")
    with Pkcs11Keys(MODULE, TOKEN, pin, softhsm_conf=conf) as service:
        # Closing one provider does not log out another of the same process (PKCS#11
        # login state is per process): private keys stay visible and usable.
        Pkcs11Keys(MODULE, TOKEN, pin, softhsm_conf=conf).close()
        assert service.versions() == [2]
        assert service.decrypt(2, service.encrypt(2, b"x", b"a"), b"a") == b"x"


def test_key_never_leaves_the_token(keys: Pkcs11Keys) -> None:
    version = keys.create()
    (key,) = list(
        keys.session.get_objects(
            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: f"enlace-kek-{version}"}
        )
    )
    assert key[Attribute.KEY_TYPE] == KeyType.AES
    assert key[Attribute.VALUE_LEN] == KEY_BYTES
    assert key[Attribute.TOKEN] is True
    assert key[Attribute.PRIVATE] is True
    assert key[Attribute.SENSITIVE] is True
    assert key[Attribute.EXTRACTABLE] is False
    assert key[Attribute.NEVER_EXTRACTABLE] is True
    assert key[Attribute.ALWAYS_SENSITIVE] is True
    assert key[Attribute.LOCAL] is True  # generated on the token, not imported
    assert key[Attribute.ENCRYPT] is True
    assert key[Attribute.DECRYPT] is True
    for use in (Attribute.WRAP, Attribute.UNWRAP, Attribute.SIGN, Attribute.DERIVE):
        assert key[use] is False
    with pytest.raises(AttributeSensitive):
        key[Attribute.VALUE]


def test_blob_layout_is_that_of_seal_with(keys: Pkcs11Keys) -> None:
    """nonce || ciphertext || tag, as keks.seal_with: shown with a known key imported
    under a version label (test only: real versions are generated on the token)."""
    known = os.urandom(KEY_BYTES)
    keys.session.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.LABEL: "enlace-kek-1",
            Attribute.VALUE: known,
            Attribute.TOKEN: False,
            Attribute.ENCRYPT: True,
            Attribute.DECRYPT: True,
        }
    )
    blob = keys.encrypt(1, b"data key", b"case-1")
    assert open_with(known, blob, b"case-1") == b"data key"


def test_wrong_pin_or_token_is_unavailable(token: tuple[Path, str]) -> None:
    conf, pin = token
    with pytest.raises(KeyUnavailable, match="PIN"):
        Pkcs11Keys(MODULE, TOKEN, pin + "x", softhsm_conf=conf)
    with pytest.raises(KeyUnavailable, match="no single"):
        Pkcs11Keys(MODULE, "no-such-token", pin, softhsm_conf=conf)


def test_closed_provider_refuses(token: tuple[Path, str]) -> None:
    conf, pin = token
    keys = Pkcs11Keys(MODULE, TOKEN, pin, softhsm_conf=conf, create_first=True)
    keys.close()
    keys.close()
    with pytest.raises(KeyUnavailable):
        keys.versions()


def test_the_token_the_scripts_made_opens() -> None:
    """The local token (deploy/local/softhsm.sh init) opens with the configuration and
    PIN the scripts wrote; its keys are only listed."""
    _softhsm2_util()
    if not LOCAL_CONF.is_file():
        pytest.fail(f"no {LOCAL_CONF}: run deploy/local/softhsm.sh init (make infra does)")
    with Pkcs11Keys(
        MODULE, LOCAL_TOKEN, secret("softhsm/user-pin"), softhsm_conf=LOCAL_CONF
    ) as keys:
        assert all(version > 0 for version in keys.versions())
