"""``python -m scitq``: the scitq command line."""

from __future__ import annotations

from scitq.cli import main

if __name__ == "__main__":
    main()
