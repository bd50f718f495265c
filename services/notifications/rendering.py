"""Rendering: the Jinja2 templates in `templates/` (read from disk, so outside the
domain) turn a message context into an SMS body or an e-mail. Templates are
`<event>.<lang>.sms.j2` and `<event>.<lang>.email.j2` (blocks `subject` and `body`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from services.notifications.domain.sms_text import fit_sms

TEMPLATES_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Email:
    subject: str
    body: str


class Renderer:
    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )

    def sms(self, event_type: str, language: str, ctx: dict[str, Any]) -> str:
        """The SMS body as sent; raises SmsTooLong beyond two segments."""
        text = self._env.get_template(f"{event_type}.{language}.sms.j2").render(ctx)
        return fit_sms(text)

    def email(self, event_type: str, language: str, ctx: dict[str, Any]) -> Email:
        template = self._env.get_template(f"{event_type}.{language}.email.j2")
        context = template.new_context(ctx)
        subject = " ".join("".join(template.blocks["subject"](context)).split())
        body = "".join(template.blocks["body"](template.new_context(ctx))).strip() + "\n"
        return Email(subject, body)
