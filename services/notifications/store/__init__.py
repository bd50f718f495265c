"""Notifications' SQL, and nothing else: `cases` (cases, source events, events parked
until their case is known), `deliveries` (the delivery rows, their outcomes, status
reports and the delivery log), `claims` (the worker's claim, every channel),
`webhooks` (partner webhook endpoints, their delivery rows and log),
`endpoint_health` (what answers do to endpoints, the sweep, their states),
`contacts` (caseworker contacts cached from intake, the contact directory replicated
from referral) and `erasures` (erased cases, and the removal of what notifications
held about them). Everything is re-exported here, so callers write
`store.claim_due(...)`."""

from services.kit.erasures import is_erased, record_erasure
from services.notifications.domain.status_reports import DeliveryStatus
from services.notifications.store.cases import (
    agency_owns_case,
    await_case,
    get_case,
    note_referral_version,
    save_case,
    save_source_event,
    take_awaiting,
)
from services.notifications.store.claims import Lane, claim_due
from services.notifications.store.contacts import (
    cache_contact,
    cached_contact,
    contact_directory,
    save_contact_directory,
)
from services.notifications.store.deliveries import (
    DUE_CHANNEL,
    Claimed,
    Outcome,
    OutcomeKind,
    Reported,
    StatusReport,
    delivery_log,
    insert_deliveries,
    lock_provider_messages,
    record_outcomes,
    record_status_reports,
    reports_for,
    sent_deliveries,
    update_reported,
)
from services.notifications.store.endpoint_health import EndpointNews, apply_endpoint_news
from services.notifications.store.erasures import ERASED_MARK, remove_case_data
from services.notifications.store.webhooks import WEBHOOK, WebhookClaim

__all__ = [
    "DUE_CHANNEL",
    "ERASED_MARK",
    "WEBHOOK",
    "Claimed",
    "DeliveryStatus",
    "EndpointNews",
    "Lane",
    "Outcome",
    "OutcomeKind",
    "Reported",
    "StatusReport",
    "WebhookClaim",
    "agency_owns_case",
    "apply_endpoint_news",
    "await_case",
    "cache_contact",
    "cached_contact",
    "claim_due",
    "contact_directory",
    "delivery_log",
    "get_case",
    "insert_deliveries",
    "is_erased",
    "lock_provider_messages",
    "note_referral_version",
    "record_erasure",
    "record_outcomes",
    "record_status_reports",
    "remove_case_data",
    "reports_for",
    "save_case",
    "save_contact_directory",
    "save_source_event",
    "sent_deliveries",
    "take_awaiting",
    "update_reported",
]
