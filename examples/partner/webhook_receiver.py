"""A partner agency's webhook receiver for Enlace's partner feed: a minimal example.

Enlace posts each event that concerns your agency to the URL you registered
(`POST /v1/webhook-endpoints` on the notifications service), the Standard Webhooks
way (https://www.standardwebhooks.com):

- headers `webhook-id` (`msg_...`: the same for every retry and redelivery of one
  event to one endpoint, so it is your idempotency key), `webhook-timestamp` (Unix
  seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256>`; during a secret
  rotation one per secret, space-separated);
- the body is the event as CloudEvents structured JSON (`application/cloudevents+json`):
  specversion, id, type, source, subject (the case id), time, datacontenttype,
  dataschema, traceparent and data.

This receiver verifies every delivery with the `standardwebhooks` package (signature
and a timestamp within five minutes of this machine's clock), answers 400 to one that
does not verify (never 410: that would disable your endpoint), answers 200 to a
delivery already taken (same webhook-id), and hands each new event to a function.
Answer fast: Enlace gives up on an attempt after 15 s and tries again later; keep the
handler to storing the event (here: printing its type, id and subject; never its data).

Run it (needs only aiohttp and standardwebhooks, see requirements.txt):

    ENLACE_WEBHOOK_SECRET=whsec_... python examples/partner/webhook_receiver.py --port 8090

Several secrets may be given, separated by spaces, to accept any of them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import os
import signal
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

DEFAULT_PATH = "/enlace/webhooks"
CLOUDEVENTS_ATTRIBUTES = ("specversion", "id", "type", "source")

# What the receiver does with each new, verified event: a plain or an async function.
EventHandler = Callable[[dict[str, Any]], Awaitable[None] | None]


def print_event(event: dict[str, Any]) -> None:
    """The default handler: what arrived, never the event's data."""
    print(
        f"received {event['type']} id={event['id']} subject={event.get('subject', '')}",
        flush=True,
    )


class SeenIds:
    """The webhook-ids already taken, the most recent `capacity` of them.

    In memory for the example. A real system keeps them in its database, written in
    the same transaction as what the event changes, so that a restart forgets nothing
    (Enlace retries for about 28 hours, and an agency may ask for a delivery again
    at any time)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, webhook_id: object) -> bool:
        return webhook_id in self._ids

    def add(self, webhook_id: str) -> None:
        self._ids[webhook_id] = None
        self._ids.move_to_end(webhook_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def discard(self, webhook_id: str) -> None:
        self._ids.pop(webhook_id, None)


class Receiver:
    """The receiver as an aiohttp application; `start(port)` / `stop()` run it in the
    current event loop (for tests), `main()` runs it as a program.

    `received` lists the new verified events, `duplicates` counts deliveries of a
    webhook-id already taken, `rejected` those that did not verify."""

    def __init__(
        self,
        secrets: str | Iterable[str],
        on_event: EventHandler = print_event,
        *,
        path: str = DEFAULT_PATH,
    ) -> None:
        self.use_secrets(secrets)
        self.on_event = on_event
        self.path = path
        self.seen = SeenIds()
        self.received: list[dict[str, Any]] = []
        self.duplicates = 0
        self.rejected = 0
        self.app = web.Application()
        self.app.router.add_post(path, self.handle)
        self._runner: web.AppRunner | None = None

    def use_secrets(self, secrets: str | Iterable[str]) -> None:
        """The secret(s) a delivery may be signed with: after a rotation, the new one
        (Enlace signs with the old one too until the overlap ends)."""
        given = secrets.split() if isinstance(secrets, str) else list(secrets)
        if not given:
            raise ValueError("no webhook secret given (ENLACE_WEBHOOK_SECRET)")
        self._verifiers = [Webhook(s) for s in given]

    def verify(self, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """The event, if any secret verifies the delivery; WebhookVerificationError
        otherwise."""
        problem: Exception = WebhookVerificationError("no secret")
        for verifier in self._verifiers:
            try:
                event = verifier.verify(body, headers)
            except (WebhookVerificationError, ValueError) as exc:  # ValueError: garbled
                problem = exc
                continue
            if not isinstance(event, dict) or any(
                not isinstance(event.get(a), str) for a in CLOUDEVENTS_ATTRIBUTES
            ):
                raise WebhookVerificationError("not a CloudEvent")
            return event
        raise WebhookVerificationError(str(problem))

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            event = self.verify(body, headers)
        except WebhookVerificationError as exc:
            self.rejected += 1
            print(f"rejected a delivery: {exc}", file=sys.stderr, flush=True)
            # 400, never 410: a 410 tells Enlace to disable this endpoint.
            return web.json_response({"error": "invalid signature"}, status=400)
        webhook_id = headers["webhook-id"]
        if webhook_id in self.seen:  # a retry or redelivery of what was taken
            self.duplicates += 1
            return web.json_response({"status": "duplicate"})
        self.seen.add(webhook_id)  # before the handler: a concurrent duplicate waits out
        try:
            outcome = self.on_event(event)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            self.seen.discard(webhook_id)
            # Not taken: a 5xx makes Enlace try again later (do not answer 410).
            return web.json_response({"error": "not processed"}, status=500)
        self.received.append(event)
        return web.json_response({"status": "received"})

    async def start(self, port: int, host: str = "127.0.0.1") -> str:
        """Listen on host:port; returns the URL to register."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        return f"http://{host}:{port}{self.path}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def make_app(secrets: str | Iterable[str], on_event: EventHandler = print_event) -> web.Application:
    """The receiver's aiohttp application (for aiohttp's own runners and test client)."""
    return Receiver(secrets, on_event).app


async def serve(receiver: Receiver, host: str, port: int) -> None:
    url = await receiver.start(port, host)
    print(f"listening on {url}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        await receiver.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--host", default=os.environ.get("ENLACE_WEBHOOK_HOST", "127.0.0.1"), help="[127.0.0.1]"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("ENLACE_WEBHOOK_PORT", "8090")),
        help="[8090]",
    )
    parser.add_argument("--path", default=DEFAULT_PATH, help=f"[{DEFAULT_PATH}]")
    args = parser.parse_args(argv)
    secret = os.environ.get("ENLACE_WEBHOOK_SECRET", "")
    if not secret.strip():
        parser.error("set ENLACE_WEBHOOK_SECRET to the secret Enlace gave at registration")
    asyncio.run(serve(Receiver(secret, path=args.path), args.host, args.port))


if __name__ == "__main__":
    main()
