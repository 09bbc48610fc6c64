"""User-supplied text (model names, paths, reasons that quote them) made safe for a terminal."""

from __future__ import annotations

_CONTROL = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F] if code not in (0x09,)}


def printable(text: object) -> str:
    """The text with control characters (ESC sequences, newlines) shown escaped, never acted on by a
    terminal: names and paths come from the user. Rich markup is a separate matter: print this text as
    a `rich.text.Text` or with `markup=False`, never as a markup string."""
    return str(text).translate(_CONTROL)
