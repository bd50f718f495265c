"""Intake's use cases: `cases` (register, read, possible duplicates, consent
withdrawal, identity disclosure, caseworker contact), `referral_events` (the grants
and referral states the referral events leave), `erasure` (erasure and retention)
and `keys` (KEK rotation, retirement, sealing of older cases).

Each is a plain async function taking the database (a connection, or the pool when
it runs transactions of its own) and a command value, with the injected clock, the
events' ce_source and the vault as keywords where it needs them. It raises
`services.kit.errors` (or `IdempotencyKeyReused`) and knows nothing of HTTP.
"""

from services.intake.commands.cases import (
    CaseRecord,
    DiscloseIdentity,
    IdempotencyKeyReused,
    Identity,
    ListPossibleDuplicates,
    Receipt,
    RegisterCase,
    Registered,
    WithdrawConsent,
    caseworker_contact,
    disclose_identity,
    possible_duplicates,
    read_case,
    register_case,
    withdraw_consent,
)
from services.intake.commands.erasure import (
    EraseCase,
    ErasureReceipt,
    Requester,
    apply_retention,
    erase_case,
    retention_due,
)
from services.intake.commands.referral_events import record_referral_event

__all__ = [
    "CaseRecord",
    "DiscloseIdentity",
    "EraseCase",
    "ErasureReceipt",
    "IdempotencyKeyReused",
    "Identity",
    "ListPossibleDuplicates",
    "Receipt",
    "RegisterCase",
    "Registered",
    "Requester",
    "WithdrawConsent",
    "apply_retention",
    "caseworker_contact",
    "disclose_identity",
    "erase_case",
    "possible_duplicates",
    "read_case",
    "record_referral_event",
    "register_case",
    "retention_due",
    "withdraw_consent",
]
