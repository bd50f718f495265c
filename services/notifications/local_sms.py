"""A small local SMS provider implementing the subset of the Twilio Messages REST API
that Enlace uses, so `make run` and the tests need no account:

- POST /2010-04-01/Accounts/{AccountSid}/Messages.json (form-encoded To, From, Body,
  StatusCallback; HTTP basic auth with the account SID and auth token) -> 201 + the
  message resource; 400 with Twilio's error 21211 for an invalid or rejected number;
  401 with 20003 for bad credentials.
- GET the same path lists the recorded messages; `?ClientReference=R` only the one
  sent with that client reference (what real providers offer to reconcile a send
  whose answer was lost).
- Status callbacks ("sent", then "delivered") to the message's StatusCallback,
  signed with X-Twilio-Signature exactly as Twilio signs them, retried with backoff
  until the receiver answers 2xx (as Twilio retries), through a client that is
  rebuilt when its connections jam.
- Fault injection: POST /_local/fail (count, status, optional to) makes the next
  sends answer that HTTP status; POST /_local/reject (number) refuses a number.

Messages are recorded in memory and appended to `.local/sms/messages.jsonl`.

    ENLACE_SMS_AUTH_TOKEN=... python -m services.notifications.local_sms \
        [--host 127.0.0.1] [--port 8090] [--account-sid AC...] [--dir .local/sms] [--reject +51...]

The auth token has no default (a default would be a published secret): the local
profile generates one (deploy/local/services.sh), tests and the bench make their own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.kit.backoff import Backoff, Stopped, until_done
from services.kit.logging import configure_logging, get_logger
from services.kit.settings import REPO_ROOT
from services.notifications.channels.sms import sign_request
from services.notifications.domain.sms_text import sms_shape

DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_DIR = REPO_ROOT / ".local" / "sms"
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")

log = get_logger(__name__)


@dataclass
class _PlannedFailure:
    status: int
    to: str | None


@dataclass
class LocalSmsProvider:
    auth_token: str
    account_sid: str = DEFAULT_ACCOUNT_SID
    record_dir: Path | None = DEFAULT_DIR
    rejected_numbers: set[str] = field(default_factory=set)
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)  # every POST, failed or not
    callbacks_sent: list[dict[str, str]] = field(default_factory=list)
    _failures: list[_PlannedFailure] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _by_reference: dict[str, dict[str, Any]] = field(default_factory=dict)
    _client: aiohttp.ClientSession | None = None
    callback_attempts: int = 8  # then the report is given up (logged)
    callback_backoff: tuple[float, float] = (0.5, 30.0)  # the kit's schedule: base, cap
    # Callbacks in flight at once, as a provider's dispatcher bounds them: thousands of
    # retrying callbacks at once (after the receiver was slow) only slowed the receiver
    # further, and this server's own answers with it.
    callback_concurrency: int = 8
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _callback_slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        if not self.auth_token:
            raise ValueError("auth_token is empty: every request would be authorised")
        self._callback_slots = asyncio.Semaphore(self.callback_concurrency)

    # --- fault injection ---------------------------------------------------------------

    def fail_next(self, count: int, status: int = 500, to: str | None = None) -> None:
        self._failures += [_PlannedFailure(status, to) for _ in range(count)]

    def reject_number(self, number: str) -> None:
        self.rejected_numbers.add(number)

    def sent_to(self, number: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["to"] == number]

    # --- HTTP --------------------------------------------------------------------------

    def app(self) -> Starlette:
        path = "/2010-04-01/Accounts/{sid}/Messages.json"
        return Starlette(
            routes=[
                Route(path, self._create, methods=["POST"]),
                Route(path, self._list, methods=["GET"]),
                Route("/_local/fail", self._control_fail, methods=["POST"]),
                Route("/_local/reject", self._control_reject, methods=["POST"]),
            ],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Starlette) -> AsyncIterator[None]:
        yield
        await self.aclose()

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return (
            secrets.compare_digest(user, self.account_sid)
            and secrets.compare_digest(password, self.auth_token)
            and request.path_params["sid"] == self.account_sid
        )

    async def _create(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, 20003, "Authentication Error - invalid username")
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        self.requests.append(form)
        to, body = form.get("To", ""), form.get("Body", "")
        for index, failure in enumerate(self._failures):
            if failure.to is None or failure.to == to:
                del self._failures[index]
                return _error(failure.status, 20500, "Internal Server Error")
        if not _E164.match(to) or to in self.rejected_numbers:
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not body:
            return _error(400, 21602, "Message body is required.")
        now = datetime.now(UTC)
        message: dict[str, Any] = {
            "sid": "SM" + secrets.token_hex(16),
            "account_sid": self.account_sid,
            "to": to,
            "from": form.get("From", ""),
            "body": body,
            "status": "queued",
            "num_segments": str(sms_shape(body).segments),
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "date_created": format_datetime(now),
            "date_updated": format_datetime(now),
            "date_sent": None,
            "error_code": None,
            "error_message": None,
            "price": None,
            "price_unit": "USD",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/",
            "client_reference": form.get("ClientReference") or None,
        }
        message["uri"] += f"{message['sid']}.json"
        self.messages.append(message)
        if message["client_reference"]:
            self._by_reference[message["client_reference"]] = message
        if self.record_dir is not None:
            self.record_dir.mkdir(parents=True, exist_ok=True)
            # With the moment it was accepted, to the microsecond (`date_created` has
            # whole seconds): what `make bench` measures the pipeline to.
            line = {**message, "accepted_at": now.timestamp()}
            with (self.record_dir / "messages.jsonl").open("ab") as handle:
                handle.write(orjson.dumps(line) + b"\n")
        callback = form.get("StatusCallback")
        if callback:
            task = asyncio.create_task(self._report_status(callback, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return JSONResponse(message, status_code=201)

    async def _list(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, 20003, "Authentication Error - invalid username")
        reference = request.query_params.get("ClientReference")
        if reference is not None:
            found = self._by_reference.get(reference)
            return JSONResponse({"messages": [found] if found else [], "page": 0})
        return JSONResponse({"messages": list(reversed(self.messages)), "page": 0})

    async def _control_fail(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        self.fail_next(
            int(form.get("count", "1")), int(form.get("status", "500")), form.get("to") or None
        )
        return JSONResponse({"planned_failures": len(self._failures)})

    async def _control_reject(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        self.reject_number(form["number"])
        return JSONResponse({"rejected_numbers": sorted(self.rejected_numbers)})

    async def _report_status(self, url: str, message: dict[str, Any]) -> None:
        """What Twilio does after accepting: signed callbacks as the status moves on,
        each retried with backoff until the receiver takes it."""
        for status in ("sent", "delivered"):
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": "2010-04-01",
                "From": str(message["from"]),
                "MessageSid": str(message["sid"]),
                "MessageStatus": status,
                "SmsSid": str(message["sid"]),
                "SmsStatus": status,
                "To": str(message["to"]),
            }
            message["status"] = status
            if not await self._callback(url, params):
                return

    async def _callback(self, url: str, params: dict[str, str]) -> bool:
        headers = {"X-Twilio-Signature": sign_request(url, params, self.auth_token)}
        failures = 0

        async def post() -> None:
            async with (
                self._callback_slots,
                self._http().post(url, data=params, headers=headers) as response,
            ):
                self.callbacks_sent.append({**params, "http_status": str(response.status)})
                response.raise_for_status()

        def on_error(exc: Exception) -> None:
            nonlocal failures
            failures += 1
            if failures >= self.callback_attempts:
                log.error("status callback given up", attempts=failures)
                raise exc
            log.warning("status callback failed; retrying", error=exc.__class__.__name__)

        try:
            await until_done(
                post,
                backoff=Backoff(*self.callback_backoff),
                stopping=self._stopping,
                on_error=on_error,
            )
        except (aiohttp.ClientError, TimeoutError, Stopped):
            return False
        return True

    def _http(self) -> aiohttp.ClientSession:
        """aiohttp, as the notifications service's SMS client: this test double shares
        the machine with what it measures, and its callbacks through httpx cost 5 ms
        of CPU per case against 2 through aiohttp."""
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=5.0),
                connector=aiohttp.TCPConnector(limit=50),
            )
        return self._client

    async def aclose(self) -> None:
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.close()
            self._client = None

    @contextlib.asynccontextmanager
    async def serving(self, host: str = "127.0.0.1", port: int = 8090) -> AsyncIterator[str]:
        """Serve on host:port in the current event loop; yields the base URL."""
        async with serve(self.app(), host, port) as base_url:
            yield base_url


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
        },
        status_code=status,
    )


@contextlib.asynccontextmanager
async def serve(app: Any, host: str, port: int) -> AsyncIterator[str]:
    """Run an ASGI app under uvicorn inside the running loop (tests, benches)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped before it started")
        await asyncio.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task


def main() -> None:
    parser = argparse.ArgumentParser(description="Local Twilio-compatible SMS provider")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument(
        "--reject", action="append", default=[], help="answer 21211 for this number (repeatable)"
    )
    args = parser.parse_args()
    # From the environment, not the command line (which any local user can list).
    auth_token = os.environ.get("ENLACE_SMS_AUTH_TOKEN", "")
    if not auth_token:
        parser.error("ENLACE_SMS_AUTH_TOKEN is not set (the account's auth token)")
    configure_logging()
    provider = LocalSmsProvider(
        auth_token,
        account_sid=args.account_sid,
        record_dir=args.dir,
        rejected_numbers=set(args.reject),
    )
    print(
        f"local SMS API on http://{args.host}:{args.port}; messages in {args.dir}/messages.jsonl",
        flush=True,
    )
    uvicorn.run(provider.app(), host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
