"""A real SMTP server for local runs and tests (aiosmtpd) that keeps every message in
a Maildir a person can open (`.local/mail/new/`, one file per message; any mail client
or `cat` reads it). It can be told to refuse some recipients with 550, as a real
server does for an unknown mailbox.

With `--api-port`, it also answers `GET /messages/<Message-ID>` (200 when a message
with that id was accepted, 404 when not), the lookup e-mail providers offer over HTTP
and notifications asks before resending a message whose first attempt may have
been accepted (README, "At most one message").

    python -m services.notifications.local_smtp [--host 127.0.0.1] [--port 2525]
        [--api-port 2526] [--maildir .local/mail] [--reject ADDRESS]
"""

from __future__ import annotations

import argparse
import email
import email.policy
import mailbox
import re
import signal
import threading
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiosmtpd.controller import Controller

from services.kit.settings import REPO_ROOT

DEFAULT_MAILDIR = REPO_ROOT / ".local" / "mail"


class MaildirHandler:
    def __init__(self, maildir: Path, reject: set[str] | None = None) -> None:
        for sub in ("tmp", "new", "cur"):  # Maildir(create=True) skips an existing empty dir
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(maildir, create=True)
        self.reject = {address.lower() for address in (reject or set())}
        self.accepted = 0
        self._lock = threading.Lock()
        self.message_ids: set[str] = set()
        for key in self.maildir.keys():  # noqa: SIM118 (Maildir iterates messages)
            found = _message_id(self.maildir.get_bytes(key))
            if found:
                self.message_ids.add(found)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self.reject:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        with self._lock:
            self.maildir.add(
                b"X-Envelope-To: " + ", ".join(envelope.rcpt_tos).encode() + b"\r\n" + raw
            )
            self.accepted += 1
            found = _message_id(raw)
            if found:
                self.message_ids.add(found)
        return "250 2.0.0 Message accepted for delivery"


_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*<([^>\r\n]+)>", re.IGNORECASE | re.MULTILINE)


def _message_id(raw: bytes) -> str | None:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = _MESSAGE_ID.search(head)
    return match.group(1).decode("ascii", "replace") if match else None


def lookup_server(handler: MaildirHandler, host: str, port: int) -> ThreadingHTTPServer:
    """`GET /messages/<Message-ID>`: 200 {"found": true} or 404 {"found": false}."""

    class Lookup(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            prefix = "/messages/"
            if not self.path.startswith(prefix):
                self._answer(404, b'{"error": "not found"}')
                return
            wanted = unquote(self.path[len(prefix) :])
            found = wanted in handler.message_ids
            self._answer(
                200 if found else 404, b'{"found": true}' if found else b'{"found": false}'
            )

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # no access log

    return ThreadingHTTPServer((host, port), Lookup)


class LocalSmtpServer:
    """Start and stop from tests or benches; messages() reads the Maildir back."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 2525,
        maildir: Path = DEFAULT_MAILDIR,
        reject: set[str] | None = None,
    ) -> None:
        self.host, self.port, self.path = host, port, Path(maildir)
        self.handler = MaildirHandler(self.path, reject)
        self._controller: Controller | None = None
        self._api: ThreadingHTTPServer | None = None
        self.api_url: str | None = None  # the lookup by Message-ID, once started with one

    def start(self, api_port: int | None = None) -> None:
        self._controller = Controller(
            self.handler, hostname=self.host, port=self.port, data_size_limit=1_000_000
        )
        self._controller.start()
        if api_port is not None:
            self.api_url = f"http://{self.host}:{api_port}"
            self._api = lookup_server(self.handler, self.host, api_port)
            threading.Thread(target=self._api.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._api is not None:
            self._api.shutdown()
            self._api.server_close()
            self._api = None

    def messages(self) -> list[EmailMessage]:
        box = mailbox.Maildir(self.path, create=True)
        out: list[EmailMessage] = []
        for key in box.keys():  # noqa: SIM118 (Maildir iterates messages, not keys)
            parsed = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            out.append(parsed)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Local SMTP server keeping a Maildir")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--api-port", type=int, default=None, help="HTTP lookup by Message-ID")
    parser.add_argument("--maildir", type=Path, default=DEFAULT_MAILDIR)
    parser.add_argument(
        "--reject", action="append", default=[], help="refuse this recipient with 550 (repeatable)"
    )
    args = parser.parse_args()
    server = LocalSmtpServer(args.host, args.port, args.maildir, set(args.reject))
    server.start(args.api_port)
    print(f"local SMTP on {args.host}:{args.port}; messages in {args.maildir}/new", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
