"""How output bytes become storable text.

PostgreSQL text cannot hold NUL and must be valid UTF-8. Output is stored as UTF-8 with
every byte that is not valid UTF-8 written ``\\xNN`` and NUL written ``\\x00``; a literal
backslash is left as it is, so the escaping is readable rather than reversible. Nothing is
ever dropped.
"""

from __future__ import annotations


def to_storable(data: str | bytes) -> str:
    """Text that PostgreSQL accepts, with invalid bytes and NULs escaped."""
    text = data.decode("utf-8", errors="backslashreplace") if isinstance(data, bytes) else data
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    # lone surrogates (from a str built with surrogateescape) cannot be encoded either
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")
