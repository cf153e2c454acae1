"""Keeping secrets out of text: the literal value and its common encodings.

A command can print a secret it found as is, or encoded: ``base64`` (at any of the
three byte alignments, wrapped at any width), hex (either case, ``xxd -p`` wraps
it), URL-safe base64. :class:`Redactor` replaces every such form it finds with
``[redacted]``. For base64 only the characters that depend on the secret's bytes
alone are matched, so a prefix or suffix in the same encoded stream does not hide
it. Whitespace (a line break) may sit between any two characters.
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache

MARK = "[redacted]"
MIN_ENCODED = 8  # secrets shorter than this are matched literally only


def _base64_cores(data: bytes, encode: object) -> list[str]:
    """The base64 characters fixed by ``data`` alone, for each of the 3 alignments."""
    cores = []
    for shift in range(3):
        text = encode(b"\0" * shift + data).decode("ascii")  # type: ignore[operator]
        first = -(-8 * shift // 6)  # ceil: first character made only of data bits
        last = (8 * (shift + len(data))) // 6  # exclusive: last character made only of them
        cores.append(text[first:last])
    return cores


def variants(secret: str) -> list[str]:
    """The forms of ``secret`` that are redacted (literal first)."""
    forms = [secret]
    if len(secret) >= MIN_ENCODED:
        data = secret.encode("utf-8", "surrogateescape")
        forms += [data.hex(), data.hex().upper()]
        forms += _base64_cores(data, base64.b64encode)
        forms += _base64_cores(data, base64.urlsafe_b64encode)
    return [form for form in dict.fromkeys(forms) if form]


@lru_cache(maxsize=16)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    forms = sorted({form for secret in secrets if secret for form in variants(secret)}, key=len)
    if not forms:
        return None
    alternatives = [r"\s?".join(map(re.escape, form)) for form in reversed(forms)]
    return re.compile("|".join(alternatives))


class Redactor:
    """Replace the secrets (and their encodings) in text with ``[redacted]``."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self.secrets = tuple(s for s in secrets if s)
        self._pattern = _pattern(self.secrets)

    def __call__(self, text: str) -> str:
        """``text`` with every form of every secret replaced."""
        if self._pattern is None:
            return text
        return self._pattern.sub(MARK, text)
