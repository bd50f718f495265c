"""Every published event type, and the bridge from a model to a CloudEvent."""

from __future__ import annotations

from contracts import events as ev
from contracts.envelope import CloudEvent, new_traceparent, schema_urn

EVENT_MODELS: dict[str, type[ev.EventData]] = {
    model.event_type: model
    for model in (
        ev.CaseCreatedV1,
        ev.CaseConsentWithdrawnV1,
        ev.CaseErasedV1,
        ev.ReferralProposedV1,
        ev.ReferralSentV1,
        ev.ReferralAcknowledgedV1,
        ev.ReferralAcceptedV1,
        ev.ReferralRejectedV1,
        ev.ReferralStartedV1,
        ev.ReferralClosedV1,
        ev.ReferralCancelledV1,
        ev.ReferralOverdueV1,
        ev.ReferralUnmetNeedV1,
        ev.FollowupDueV1,
        ev.FollowupCompletedV1,
        ev.NotificationSentV1,
        ev.NotificationFailedV1,
    )
}

# What partner agencies' systems may receive (their feed topic, their webhooks): every
# coordination event, never notifications' own reports about messages to people.
PARTNER_EVENT_TYPES: tuple[str, ...] = tuple(
    sorted(t for t, m in EVENT_MODELS.items() if m.producer != "notifications")
)

SERVICES = ("intake", "referral", "followup", "notifications")


def service_source(service: str) -> str:
    """The `ce_source` of every event a service publishes."""
    return f"/enlace/{service}"


def producer_source(event_type: str) -> str:
    """The only `ce_source` a consumer accepts for this event type."""
    return service_source(model_for(event_type).producer)


def topics_produced_by(service: str) -> list[str]:
    """The contract topics a service publishes on (its Kafka WRITE grants)."""
    return sorted({m.topic.value for m in EVENT_MODELS.values() if m.producer == service})


class UnknownEventType(LookupError):
    pass


def model_for(event_type: str) -> type[ev.EventData]:
    try:
        return EVENT_MODELS[event_type]
    except KeyError:
        raise UnknownEventType(event_type) from None


def to_cloud_event(
    data: ev.EventData, *, source: str, traceparent: str | None = None
) -> CloudEvent:
    return CloudEvent(
        type=data.event_type,
        source=source,
        subject=str(data.case_id),
        data=data.model_dump(mode="json"),
        dataschema=schema_urn(data.event_type),
        traceparent=traceparent or new_traceparent(),
    )


def parse_data(event: CloudEvent) -> ev.EventData:
    """Validate an incoming event's data against its v1 model."""
    return model_for(event.type).model_validate(event.data)
