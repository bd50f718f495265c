"""What sealing a child's identity costs intake, measured in this run: the time it
adds to one registration (a fresh data key wrapped by the KEK, four fields sealed,
two keyed hashes) and to one read (the data key unwrapped, the fields opened), with
the key file and with the SoftHSM2 token (PKCS#11) that the local scripts make.
Intake's throughput with sealing is the foundation section's figure."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

import orjson

from bench.common import BenchContext, Figure
from services.intake import duplicates, sealing
from services.intake.domain import CaseRegistration
from services.intake.kek_pkcs11 import Pkcs11Keys
from services.intake.keks import FileKeys, KekRing, KeyEncryptionKeys
from services.intake.vault import Vault
from services.kit.local_secrets import REPO_ROOT, secret
from tests.factories import piura_adolescent_girl

ROUNDS = 3000
SOFTHSM_CONF = REPO_ROOT / ".local" / "softhsm" / "softhsm2.conf"


def _per_call_us(work: Callable[[], object], rounds: int = ROUNDS) -> float:
    for _ in range(50):  # warm
        work()
    started = time.perf_counter()
    for _ in range(rounds):
        work()
    return (time.perf_counter() - started) / rounds * 1e6


def _figures(label: str, keys: KeyEncryptionKeys) -> list[Figure]:
    vault = Vault(KekRing(keys), os.urandom(32))
    registration = CaseRegistration.model_validate(
        piura_adolescent_girl(
            guardian={"name": "Rosa Elvira Méndez", "relationship": "tía", "phone": "+51987650001"}
        )
    )
    body = registration.model_dump(mode="json")
    raw = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    case_id = uuid.uuid4()

    def register() -> object:
        # What register_case adds for sealing: split, seal under a new wrapped key, and
        # the two keyed hashes (the duplicate key and the idempotent request's).
        _, identifying = sealing.split(body)
        vault.request_hash(raw)
        vault.duplicate_key(duplicates.duplicate_basis(registration))
        return vault.seal_new(case_id, identifying)

    sealed = register()
    assert hasattr(sealed, "sealed")
    _, identifying = sealing.split(body)
    identity = vault.seal_new(case_id, identifying)

    def read() -> object:
        return vault.open(case_id, identity.sealed, identity.data_key_version, identity.wrapped_key)

    return [
        Figure(f"sealing added to one registration ({label})", _per_call_us(register), "us"),
        Figure(f"opening added to one read ({label})", _per_call_us(read), "us"),
    ]


async def run(ctx: BenchContext) -> list[Figure]:
    del ctx  # nothing on the broker or the database: CPU alone
    directory = REPO_ROOT / ".local" / "bench" / f"kek-{uuid.uuid4().hex[:8]}"
    figures = _figures("key file", FileKeys(directory, create_first=True))
    with Pkcs11Keys(
        "/usr/lib/softhsm/libsofthsm2.so",
        "enlace-intake",
        secret("softhsm/user-pin"),
        softhsm_conf=SOFTHSM_CONF,
        create_first=True,
    ) as token:
        figures += _figures("SoftHSM2 token, PKCS#11", token)
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()
    return figures
