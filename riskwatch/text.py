"""Free text from people and files, with the control characters refused.

A name, a description or a comment goes into warnings, CloudEvents, CAP
documents and the audit trail as it was typed, and from there onto an
officer's terminal (``riskwatch warnings show``) or a receiver's log. ESC,
BEL, NUL and the other control characters (Unicode category ``Cc``, C0 and
C1) would reach them raw: an escape sequence rewrites the screen or the
window title, a NUL cuts a C string short. So they are refused where the
text comes in, with the field and the position named.

Two kinds of text:

* :data:`OneLine`: a name, a phone number, an authority: no control
  character at all, not even a tab or a line break.
* :data:`FreeText`: a description, a reason, a comment: tabs and line
  breaks are text (a folded YAML scalar ends with one), every other control
  character is refused.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator

# What free text may hold of the control characters.
TEXT_CONTROLS = frozenset("\n\r\t")


def refuse_controls(text: str, allowed: frozenset[str] = frozenset()) -> str:
    """``text`` itself if it holds no control character but ``allowed``.

    Raises:
        ValueError: naming the first control character and its position.

    >>> refuse_controls("tank farm")
    'tank farm'
    >>> refuse_controls("a\\x1b]0;x\\x07")
    Traceback (most recent call last):
    ...
    ValueError: contains the control character U+001B at position 1; only printable text on one line
    """  # noqa: E501 - a doctest's output is one line
    for position, ch in enumerate(text):
        if unicodedata.category(ch) == "Cc" and ch not in allowed:
            may = (
                "only printable text, tabs and line breaks"
                if allowed
                else "only printable text on one line"
            )
            raise ValueError(
                f"contains the control character U+{ord(ch):04X} at position "
                f"{position}; {may}"
            )
    return text


def free_text(text: str) -> str:
    """``text`` if it holds no control character but tabs and line breaks."""
    return refuse_controls(text, TEXT_CONTROLS)


OneLine = Annotated[str, AfterValidator(refuse_controls)]
"""A string without control characters: names, phone numbers, authorities."""

FreeText = Annotated[str, AfterValidator(free_text)]
"""A string whose only control characters are tabs and line breaks."""
