"""A real SMTP server for local runs and tests (aiosmtpd) that keeps every message in
a Maildir a person can open (`.local/mail/new/`, one file per message; any mail client
or `cat` reads it). It can be told to refuse some recipients with 550, as a real
server does for an unknown mailbox.

    python -m services.notifications.local_smtp [--host 127.0.0.1] [--port 2525]
                                                [--maildir .local/mail] [--reject ADDRESS]
"""

from __future__ import annotations

import argparse
import email
import email.policy
import mailbox
import signal
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any

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
        return "250 2.0.0 Message accepted for delivery"


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

    def start(self) -> None:
        self._controller = Controller(
            self.handler, hostname=self.host, port=self.port, data_size_limit=1_000_000
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

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
    parser.add_argument("--maildir", type=Path, default=DEFAULT_MAILDIR)
    parser.add_argument(
        "--reject", action="append", default=[], help="refuse this recipient with 550 (repeatable)"
    )
    args = parser.parse_args()
    server = LocalSmtpServer(args.host, args.port, args.maildir, set(args.reject))
    server.start()
    print(f"local SMTP on {args.host}:{args.port}; messages in {args.maildir}/new", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
