"""Control characters made visible: what a run page shows instead of a terminal escape.

A terminal would act on ``ESC [2J`` or ``ESC ]0;title BEL``; a browser ignores most of
them, which hides what the model wrote. Here each one becomes a visible sign in ASCII
(every font has it): C0 and C1 controls and DEL as ``\\x1b``, the bidirectional and
invisible formatting characters (which can make text read differently from what it is)
as ``\\u202e``. Newline and tab stay. :func:`markup` HTML-escapes the text around the
signs and marks each sign, so a real escape and the four characters ``\\x1b`` typed by a
model look different on the page.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_HIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]"
)


def sign(char: str) -> str:
    """The visible sign of one hidden character."""
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every control and invisible formatting character shown as its sign."""
    return _HIDDEN.sub(lambda match: sign(match.group()), text)


def markup(text: str) -> Markup:
    """``text`` as HTML: escaped, each hidden character a marked sign (``<span class=ctl>``)."""
    out: list[str] = []
    last = 0
    for match in _HIDDEN.finditer(text):
        out.append(escape(text[last : match.start()]))
        out.append(f'<span class="ctl">{sign(match.group())}</span>')
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("".join(out))  # noqa: S704 (every piece of text above went through escape)
