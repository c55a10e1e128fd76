"""docs/cli.md is the commands' own help: regenerate it when a command changes."""

from __future__ import annotations

from pathlib import Path

from scitq.cli.reference import reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_the_cli_reference_is_current():
    assert DOC.read_text() == reference(), (
        "docs/cli.md is out of date: python -m scitq.cli.reference > docs/cli.md"
    )


def test_the_reference_covers_every_command():
    text = reference()
    for command in ("scitq launch", "scitq task list", "scitq task log", "scitq batch wait",
                    "scitq worker set", "scitq db upgrade", "scitq fetch copy",
                    "scitq completion"):  # fmt: skip
        assert f"`{command}`" in text, command
