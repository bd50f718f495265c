"""Referral's use cases: plain async functions taking the database (a pool when the
use case runs its own transactions, the caller's connection when it runs inside
the consumer's), the `Context` and a command value; they return a result and
refuse with the kit's domain errors (services/kit/errors.py), never HTTP.

- `referrals`: list, read (with audited disclosure through intake), refer by hand;
- `lifecycle`: a party's step along the transition table (confirm, acknowledge,
  accept, reject, start, close, cancel), and the write shared with `cases`;
- `directory`: search services, read and edit the directory, read its contacts;
- `cases`: route a new case, cancel open referrals when consent is withdrawn, and
  erase a case (cancel, remove what identifies a person, record the erasure);
- `context`: the dependencies, the intake port and version preconditions;
- `guards`: refusals more than one use case makes (decision dates, consent).

Callers use `commands.<name>`; the use cases and their values are re-exported here.
"""

from services.referral.commands.cases import (
    EraseCase,
    RouteCase,
    WithdrawConsent,
    erase_case,
    route_case,
    withdraw_consent,
)
from services.referral.commands.context import Context, IdentitySource, Versions
from services.referral.commands.directory import (
    DirectorySnapshot,
    PutOrganization,
    find_services,
    put_organization,
    read_contact_directory,
    read_directory,
    remove_organization,
)
from services.referral.commands.lifecycle import TakeStep, take_step
from services.referral.commands.referrals import (
    ListReferrals,
    ReadReferral,
    ReferByHand,
    ReferralList,
    ReferralRead,
    SeenReferral,
    list_referrals,
    read_referral,
    refer_by_hand,
)

__all__ = [
    "Context",
    "DirectorySnapshot",
    "EraseCase",
    "IdentitySource",
    "ListReferrals",
    "PutOrganization",
    "ReadReferral",
    "ReferByHand",
    "ReferralList",
    "ReferralRead",
    "RouteCase",
    "SeenReferral",
    "TakeStep",
    "Versions",
    "WithdrawConsent",
    "erase_case",
    "find_services",
    "list_referrals",
    "put_organization",
    "read_contact_directory",
    "read_directory",
    "read_referral",
    "refer_by_hand",
    "remove_organization",
    "route_case",
    "take_step",
    "withdraw_consent",
]
