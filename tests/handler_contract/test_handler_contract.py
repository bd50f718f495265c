"""The handler contract, written once and run against every subscription of every
service: an event delivered twice, the same content under a new event id, an older
version after a newer one, a record that is not JSON, one that fails its schema,
and one whose handler fails transiently and then succeeds.

Each case compares the service's whole database (every row of every table but the
consumer's bookkeeping, the outbox included) before and after, for a case of its
own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import orjson
import pytest

from contracts.envelope import CloudEvent
from contracts.registry import PARTNER_EVENT_TYPES
from contracts.topics import dead_letter_topic
from services.kit.consumer import EventHandler
from services.kit.db import Conn
from services.kit.event_errors import TransientError
from tests.handler_contract.conftest import ServiceUnderTest, cloud_event, new_id
from tests.handler_contract.story import PREREQUISITES, Story
from tests.helpers import TopicReader
from tests.infra import Infra

# Every (service, event type) some subscription handles; test_every_subscription_is_covered
# fails when a service subscribes to something new that is not listed here.
HANDLED: list[tuple[str, str]] = [
    ("referral", "case.created"),
    ("referral", "case.consent_withdrawn"),
    ("referral", "case.erased"),
    ("followup", "case.created"),
    ("followup", "case.erased"),
    *(
        ("followup", f"referral.{t}")
        for t in (
            "proposed",
            "sent",
            "acknowledged",
            "accepted",
            "rejected",
            "started",
            "closed",
            "cancelled",
        )
    ),
    # notifications: every coordination event (people are messaged about some; the
    # partner feeds of the agencies concerned get all of them)
    *(("notifications", t) for t in PARTNER_EVENT_TYPES),
    *(
        ("intake", f"referral.{t}")
        for t in (
            "proposed",
            "sent",
            "acknowledged",
            "accepted",
            "started",
            "rejected",
            "closed",
            "cancelled",
        )
    ),
]
IDS = [f"{s}:{t}" for s, t in HANDLED]
Services = dict[str, ServiceUnderTest]


def _handles(sut: ServiceUnderTest, event_type: str) -> bool:
    return any(event_type in s.handlers for s in sut.runtime.subscriptions)


async def _prepare(sut: ServiceUnderTest, story: Story, event_type: str, *, skip: str = "") -> None:
    """Deliver what the service must have seen before `event_type` means something."""
    for earlier in PREREQUISITES[event_type]:
        if earlier != skip and _handles(sut, earlier):
            await sut.deliver(cloud_event(story, earlier))


def _older(service: str, event_type: str) -> str | None:
    """The latest earlier event with a lower referral version that the service handles."""
    version = Story.versioned(event_type)
    if version is None:
        return None
    earlier = [
        t
        for t in PREREQUISITES[event_type]
        if (service, t) in HANDLED and (Story.versioned(t) or version) < version
    ]
    return earlier[-1] if earlier else None


# The pairs for which an older version of the same referral exists to arrive late.
WITH_OLDER = [(s, t) for s, t in HANDLED if _older(s, t) is not None]


async def test_every_subscription_is_covered(services: Services) -> None:
    subscribed = {
        (name, event_type)
        for name, sut in services.items()
        for subscription in sut.runtime.subscriptions
        for event_type in subscription.handlers
    }
    assert subscribed == set(HANDLED)


@pytest.mark.parametrize(("service", "event_type"), HANDLED, ids=IDS)
async def test_the_same_event_twice_applies_once(
    services: Services, service: str, event_type: str
) -> None:
    sut = services[service]
    story = await sut.story()
    await _prepare(sut, story, event_type)
    before = await sut.snapshot()
    event = cloud_event(story, event_type)

    await sut.deliver(event)
    once = await sut.snapshot()
    assert once != before, f"{service} did nothing with {event_type}"
    await sut.deliver(event)

    assert await sut.snapshot() == once
    assert await sut.processed(event.id) == ["applied"]


@pytest.mark.parametrize(("service", "event_type"), HANDLED, ids=IDS)
async def test_the_same_content_under_a_new_event_id_changes_nothing(
    services: Services, service: str, event_type: str
) -> None:
    sut = services[service]
    story = await sut.story()
    await _prepare(sut, story, event_type)
    event = cloud_event(story, event_type)
    await sut.deliver(event)
    once = await sut.snapshot()

    copy = new_id(event)
    await sut.deliver(copy)

    assert await sut.snapshot() == once
    assert await sut.processed(copy.id) == ["applied"]


@pytest.mark.parametrize(
    ("service", "event_type"), WITH_OLDER, ids=[f"{s}:{t}" for s, t in WITH_OLDER]
)
async def test_an_older_version_after_a_newer_one_changes_nothing(
    services: Services, service: str, event_type: str
) -> None:
    sut = services[service]
    story = await sut.story()
    older = _older(service, event_type)
    assert older is not None
    await _prepare(sut, story, event_type, skip=older)
    await sut.deliver(cloud_event(story, event_type))
    after_newer = await sut.snapshot()

    late = cloud_event(story, older)
    await sut.deliver(late)

    _assert_only_late_facts(service, after_newer, await sut.snapshot(), f"{older} late")
    assert await sut.processed(late.id) == ["applied"]


# What an older event may still do: fill a fact about the referral's history that is
# still empty, or make it earlier (follow-up's closed-loop report needs when it was
# sent or acknowledged, even when it learns late, and an acceptance implies an
# acknowledgement no later than itself). It never moves the state or the version
# back, never starts a deadline and never enqueues an event.
LATE_FACTS: dict[tuple[str, str], frozenset[str]] = {
    ("followup", "referrals"): frozenset(
        {
            "sent_at",
            "acknowledge_due_at",
            "acknowledged_at",
            "decided_at",
            "service_started_at",
            "closed_at",
            "finished_at",
            "outcome",
            "updated_at",
        }
    ),
}


def _assert_only_late_facts(
    service: str, before: dict[str, list[str]], after: dict[str, list[str]], what: str
) -> None:
    assert after.keys() == before.keys()
    for table, rows in before.items():
        facts = LATE_FACTS.get((service, table), frozenset())
        if not facts:
            assert after[table] == rows, f"{what} changed {service}'s {table}"
            continue

        def keyed(raw: list[str], facts: frozenset[str] = facts) -> dict[bytes, dict[str, object]]:
            out = {}
            for text in raw:
                row = orjson.loads(text)
                rest = {k: v for k, v in row.items() if k not in facts}
                out[orjson.dumps(rest, option=orjson.OPT_SORT_KEYS)] = row
            return out

        old, new = keyed(rows), keyed(after[table])
        assert new.keys() == old.keys(), f"{what} changed more than facts in {service}'s {table}"
        for key, row in new.items():
            for column in facts - {"updated_at"}:
                was, now = old[key][column], row[column]
                if was is not None and now != was:  # the earliest time of a milestone wins
                    assert isinstance(was, str), f"{what} overwrote {table}.{column}"
                    assert isinstance(now, str), f"{what} erased {table}.{column}"
                    assert datetime.fromisoformat(now) < datetime.fromisoformat(was), (
                        f"{what} moved {table}.{column} later"
                    )


async def _dead_letter_of(
    infra: Infra, namespace: str, sut: ServiceUnderTest, event: CloudEvent
) -> dict[str, str]:
    topic = dead_letter_topic(sut.subscription_for(event.type).topic)
    records = await TopicReader(infra.kafka(), namespace).wait_for(
        topic,
        lambda rs: any(r.headers.get("ce_id") == event.id for r in rs),
        what=f"{event.type} {event.id} on {topic}",
    )
    (record,) = [r for r in records if r.headers.get("ce_id") == event.id]
    assert record.key == event.subject
    return record.headers


@pytest.mark.parametrize(("service", "event_type"), HANDLED, ids=IDS)
async def test_a_record_that_is_not_json_is_dead_lettered(
    services: Services, service: str, event_type: str, infra: Infra, namespace: str
) -> None:
    sut = services[service]
    story = await sut.story()
    await _prepare(sut, story, event_type)
    before = await sut.snapshot()
    event = cloud_event(story, event_type)

    await sut.deliver(event, value=b"\x00{not json")

    headers = await _dead_letter_of(infra, namespace, sut, event)
    assert headers["x-error-type"] == "EnvelopeError"
    assert await sut.snapshot() == before


@pytest.mark.parametrize(("service", "event_type"), HANDLED, ids=IDS)
async def test_a_record_that_fails_its_schema_is_dead_lettered(
    services: Services, service: str, event_type: str, infra: Infra, namespace: str
) -> None:
    sut = services[service]
    story = await sut.story()
    await _prepare(sut, story, event_type)
    before = await sut.snapshot()
    event = cloud_event(story, event_type)
    broken = {**event.data, "reference": 42, "unexpected": True}

    await sut.deliver(event, value=orjson.dumps(broken))

    headers = await _dead_letter_of(infra, namespace, sut, event)
    assert headers["x-error-type"] == "ValidationError"
    assert "reference" in headers["x-error-message"]
    assert await sut.snapshot() == before
    assert await sut.processed(event.id) == ["dead_lettered"]


def _failing_once(calls: list[str]) -> Callable[[EventHandler], EventHandler]:
    def wrap(handler: EventHandler) -> EventHandler:
        async def flaky(conn: Conn, event: CloudEvent) -> None:
            calls.append(event.id)
            if len(calls) == 1:
                raise TransientError("a dependency is briefly unavailable")
            await handler(conn, event)

        return flaky

    return wrap


@pytest.mark.parametrize(("service", "event_type"), HANDLED, ids=IDS)
async def test_a_transient_failure_then_success_applies_once(
    services: Services, service: str, event_type: str
) -> None:
    sut = services[service]
    story = await sut.story()
    await _prepare(sut, story, event_type)
    before = await sut.snapshot()
    event = cloud_event(story, event_type)
    calls: list[str] = []

    await sut.deliver(event, wrap=_failing_once(calls))

    assert calls == [event.id, event.id]
    applied = await sut.snapshot()
    assert applied != before, f"{service} did nothing with {event_type} after the retry"
    assert await sut.processed(event.id) == ["applied"]
    await sut.deliver(event)
    assert await sut.snapshot() == applied
