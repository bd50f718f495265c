"""SMS text: bodies are folded to the GSM-7 alphabet where possible (accents, curly
quotes), counted in segments as carriers count them, and refused beyond two."""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")
_FOLD = {
    "“": '"',
    "”": '"',
    "„": '"',
    "‘": "'",
    "’": "'",
    "–": "-",
    "—": "-",
    "…": "...",
    "º": "o",
    "ª": "a",
    "ç": "c",
    "\u00a0": " ",
    "·": ".",
}

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67
MAX_SMS_SEGMENTS = 2


class SmsTooLong(ValueError):
    pass


def to_gsm7(text: str) -> str:
    """Fold characters outside GSM-7 (á, í, ó, ú, curly quotes...) to their closest
    GSM-7 form; characters with no such form are kept (the message becomes UCS-2)."""
    out: list[str] = []
    for char in text:
        if char in GSM7_BASIC or char in GSM7_EXTENDED:
            out.append(char)
        elif char in _FOLD:
            out.append(_FOLD[char])
        else:
            base = "".join(
                c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
            )
            out.append(base if base and all(c in GSM7_BASIC for c in base) else char)
    return "".join(out)


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text)


class SmsEncoding(StrEnum):
    GSM7 = "GSM-7"  # 7-bit septets; extended characters take two
    UCS2 = "UCS-2"  # UTF-16 code units, for anything GSM-7 cannot write


@dataclass(frozen=True)
class SmsShape:
    encoding: SmsEncoding
    units: int  # septets (extended characters count 2) or UTF-16 code units
    segments: int


def sms_shape(text: str) -> SmsShape:
    if is_gsm7(text):
        units = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
        single, part, encoding = GSM7_SINGLE, GSM7_PART, SmsEncoding.GSM7
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part, encoding = UCS2_SINGLE, UCS2_PART, SmsEncoding.UCS2
    segments = 1 if units <= single else math.ceil(units / part)
    return SmsShape(encoding, units, segments)


def fit_sms(text: str, max_segments: int = MAX_SMS_SEGMENTS) -> str:
    """The SMS body as sent: whitespace collapsed, folded to GSM-7; refuses > max segments."""
    body = to_gsm7(" ".join(text.split()))
    shape = sms_shape(body)
    if shape.segments > max_segments:
        raise SmsTooLong(f"{shape.segments} {shape.encoding} segments ({shape.units} units)")
    return body
