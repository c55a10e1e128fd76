"""Terminal output as HTML: SGR colour codes become ``<span>``s with classes
(``ansi-bold``, ``ansi-fg-1``, ``ansi-bg-4``...), other escape sequences (cursor moves,
titles) and stray ESC bytes are dropped, and the text between them is escaped. The
codes are found in the raw text, before escaping: escaping first would turn a quote
after ``ESC [`` into an entity that no pattern recognises, leaving a raw ESC.

Colour state starts afresh at each call: a colour left open at the end of one page of
output is not carried to the next.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

#: Select Graphic Rendition: ESC [ params m.
_SGR = re.compile(r"\x1b\[([0-9;:]*)m")
#: Other escape sequences: CSI (cursor, erase), OSC (titles, links), two-byte ones.
_OTHER = re.compile(r"\x1b(?:\[[0-9;:?<=>]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
#: Control characters a browser would show as boxes (tab, newline, CR are kept), and
#: the ESC of a sequence none of the patterns above recognised.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

_ATTRIBUTES = {1: "bold", 2: "dim", 3: "italic", 4: "underline", 7: "reverse", 9: "strike"}
_RESETS = {22: ("bold", "dim"), 23: ("italic",), 24: ("underline",), 27: ("reverse",),
           29: ("strike",)}  # fmt: skip


def _apply(codes: list[int], state: dict[str, str]) -> None:
    """Update ``state`` (attribute -> class) with the codes of one SGR sequence."""
    position = 0
    while position < len(codes):
        code = codes[position]
        position += 1
        if code == 0:
            state.clear()
        elif code in _ATTRIBUTES:
            state[_ATTRIBUTES[code]] = f"ansi-{_ATTRIBUTES[code]}"
        elif code in _RESETS:
            for name in _RESETS[code]:
                state.pop(name, None)
        elif 30 <= code <= 37 or 90 <= code <= 97:
            state["fg"] = f"ansi-fg-{code - 30 if code < 90 else code - 90 + 8}"
        elif 40 <= code <= 47 or 100 <= code <= 107:
            state["bg"] = f"ansi-bg-{code - 40 if code < 100 else code - 100 + 8}"
        elif code in (38, 48):  # 256 colours (5;n) or true colour (2;r;g;b)
            kind = codes[position] if position < len(codes) else None
            if kind == 5 and position + 1 < len(codes) and codes[position + 1] < 16:
                target = "fg" if code == 38 else "bg"
                state[target] = f"ansi-{target}-{codes[position + 1]}"
            position += 2 if kind == 5 else 4 if kind == 2 else 0
        elif code == 39:
            state.pop("fg", None)
        elif code == 49:
            state.pop("bg", None)


def ansi_to_html(text: str) -> Markup:
    """``text`` escaped for HTML, its colours as spans, other escape codes removed."""
    parts: list[str] = []
    state: dict[str, str] = {}
    is_open = False
    position = 0
    for match in _SGR.finditer(text):
        parts.append(_clean(text[position : match.start()]))
        position = match.end()
        codes = [int(part) for part in re.split("[;:]", match[1]) if part.isdigit()] or [0]
        _apply(codes, state)
        if is_open:
            parts.append("</span>")
            is_open = False
        if state:
            parts.append(f'<span class="{" ".join(sorted(state.values()))}">')
            is_open = True
    parts.append(_clean(text[position:]))
    if is_open:
        parts.append("</span>")
    return Markup("".join(parts))  # escaped pieces (_clean) and fixed tags


def _clean(text: str) -> str:
    return str(escape(_CONTROL.sub("", _OTHER.sub("", text))))
