"""Partner feeds, without I/O: which agencies an event concerns (need-to-know),
which event types a partner system may receive, what a webhook's answer means, when
to try again, and which URLs a webhook endpoint may have."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from contracts import events as ev
from contracts.registry import PARTNER_EVENT_TYPES as PARTNER_EVENT_TYPES

# The Standard Webhooks retry schedule: after the first attempt fails, try again
# after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (eight attempts in all).
STANDARD_RETRY_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)

# What a webhook endpoint's URL may be at most (a partner's URL, not a document).
MAX_URL_LENGTH = 2000


def concerned_agencies(data: ev.EventData) -> frozenset[str]:
    """The agencies whose systems may receive this event: the registering agency for
    an event about its case, the two agencies of a referral (sent or received), the
    agency whose follow-up or deadline it is. Nobody else: not every agency's
    coordination traffic."""
    if isinstance(data, ev.ReferralEventV1):
        return frozenset({data.from_agency_id, data.to_agency_id})
    if isinstance(
        data,
        ev.CaseCreatedV1 | ev.CaseConsentWithdrawnV1 | ev.CaseErasedV1 | ev.ReferralUnmetNeedV1,
    ):
        return frozenset({data.registering_agency_id})
    if isinstance(data, ev.FollowupDueV1 | ev.FollowupCompletedV1):
        return frozenset({data.agency_id})
    return frozenset()


@dataclass(frozen=True)
class EndpointTarget:
    """A webhook endpoint that takes events, as fan-out needs it; `held` when it is
    disabled for now (its deliveries wait for it to be enabled again)."""

    endpoint_id: str
    agency_id: str
    event_types: frozenset[str]
    held: bool = False


def endpoints_for(
    event_type: str, agencies: frozenset[str], endpoints: Iterable[EndpointTarget]
) -> list[EndpointTarget]:
    """The endpoints of the concerned agencies that subscribed to this event type."""
    return [e for e in endpoints if e.agency_id in agencies and event_type in e.event_types]


class Answer(StrEnum):
    """What an endpoint's HTTP status means for the delivery and the endpoint."""

    DELIVERED = "delivered"  # 2xx
    GONE = "gone"  # 410: the endpoint is disabled, nothing more is sent to it
    BACK_OFF = "back_off"  # 429, 502, 503, 504: the endpoint is paused, then retried
    FAILED = "failed"  # anything else (a redirect is not followed): retried


BACK_OFF_STATUSES = frozenset({429, 502, 503, 504})


def answer_for(status: int) -> Answer:
    if 200 <= status < 300:
        return Answer.DELIVERED
    if status == 410:
        return Answer.GONE
    if status in BACK_OFF_STATUSES:
        return Answer.BACK_OFF
    return Answer.FAILED


def pause_for(retry_after: float | None, attempt_delay: float, cap: float = 3600.0) -> float:
    """How long an endpoint that asked to back off is left alone: what it asked for
    (Retry-After), else the delivery's own next delay, never more than `cap`."""
    wanted = retry_after if retry_after is not None and retry_after > 0 else attempt_delay
    return min(cap, wanted)


def is_public(address: str) -> bool:
    """A globally routable unicast address: never loopback, private, link-local,
    shared (CGNAT), multicast, reserved, or an IPv4 address mapped into IPv6."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def url_problem(url: str, *, public_https_only: bool) -> str | None:
    """Why this URL cannot be a webhook endpoint, or None. Outside the local profile
    only https, and an address given as an IP literal must be public (a host name is
    resolved and checked at registration and at each connection)."""
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    allowed = ("https",) if public_https_only else ("https", "http")
    if parts.scheme not in allowed:
        return "must be an https URL" if public_https_only else "must be an http(s) URL"
    host = parts.hostname
    if not host:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (the signature authenticates Enlace)"
    if parts.fragment:
        return "must not have a fragment"
    if port == 0:
        return "has an invalid port"
    literal = _ip_literal(host)
    if public_https_only:
        if host == "localhost" or host.endswith(".localhost"):
            return "must resolve to a public address"
        if literal is not None and not is_public(literal):
            return "must resolve to a public address"
    return None
