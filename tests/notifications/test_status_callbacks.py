"""The local SMS provider's status callbacks: retried with backoff until the receiver
takes them (a burst of failures no longer leaves SMS `sent` forever), and a report
that arrives late, after a later one, does not move a delivery back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.notifications.channels.sms import TwilioSmsProvider, sign_request
from services.notifications.local_sms import LocalSmsProvider, serve
from tests.helpers import free_port, poll_until
from tests.notifications import events
from tests.notifications.conftest import SMS_AUTH_TOKEN, Kafka, Notifications


class FlakyReceiver:
    """Answers 503 to the first `failures` callbacks, then 204; keeps what it took."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.taken: list[str] = []

    async def receive(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        if self.failures > 0:
            self.failures -= 1
            return Response(status_code=503)
        self.taken.append(form["MessageStatus"])
        return Response(status_code=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[FlakyReceiver, str]]:
    flaky = FlakyReceiver(failures=3)
    app = Starlette(routes=[Route("/status", flaky.receive, methods=["POST"])])
    async with serve(app, "127.0.0.1", free_port()) as url:
        yield flaky, f"{url}/status"


async def test_callbacks_are_retried_until_the_receiver_takes_them(
    receiver: tuple[FlakyReceiver, str],
) -> None:
    flaky, callback_url = receiver
    provider = LocalSmsProvider(SMS_AUTH_TOKEN, record_dir=None, callback_backoff=(0.05, 0.2))
    async with provider.serving(port=free_port()) as base:
        sms = TwilioSmsProvider(
            base_url=base,
            account_sid=provider.account_sid,
            auth_token=SMS_AUTH_TOKEN,
            from_number="+15005550006",
            status_callback_url=callback_url,
        )
        reference = uuid.uuid4().hex
        receipt = await sms.send("+51911000003", "Enlace: prueba", reference=reference)
        await poll_until(
            lambda: _taken(flaky), lambda t: t == ["sent", "delivered"], what="both reports"
        )
        refused = [c for c in provider.callbacks_sent if c["http_status"] == "503"]
        assert len(refused) == 3
        # and the provider can say what became of the send, by its client reference
        found = await sms.lookup(reference)
        assert found is not None
        assert found.provider_message_id == receipt.provider_message_id
        assert await sms.lookup(uuid.uuid4().hex) is None
        await sms.aclose()


async def _taken(flaky: FlakyReceiver) -> list[str]:
    return list(flaky.taken)


async def test_a_late_report_does_not_move_a_delivery_back(
    notifications: Notifications, kafka: Kafka
) -> None:
    case_id, reference = str(uuid.uuid4()), events.new_reference()
    await kafka.publish(
        events.referral_sent(
            case_id, reference, to_agency_id="cem-piura", service_id="cem-piura-guardia"
        )
    )
    (delivered,) = await poll_until(
        lambda: notifications.deliveries(case_id),
        lambda rows: len(rows) == 1 and rows[0]["status"] == "delivered",
        what="the SMS delivered",
    )
    settings = notifications.settings
    params = {
        "AccountSid": settings.sms_account_sid,
        "MessageSid": delivered["provider_message_id"],
        "MessageStatus": "sent",  # retried by the provider, it arrives after "delivered"
    }
    url = settings.sms_status_callback_url
    answer = await notifications.client.post(
        "/v1/sms/status",
        data=params,
        headers={"X-Twilio-Signature": sign_request(url, params, SMS_AUTH_TOKEN)},
    )
    assert answer.status_code == 204  # accepted and recorded
    (after,) = await notifications.deliveries(case_id)
    assert (after["status"], after["provider_status"]) == ("delivered", "delivered")
