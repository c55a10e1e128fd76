"""The key that signs session cookies: configured, or generated once and kept in a file
only its owner can read."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets

from scitq.config import WebSettings
from scitq.errors import ConfigError

logger = logging.getLogger(__name__)


def secret_key(settings: WebSettings) -> str:
    """The configured key, else the content of ``secret_key_file`` (created if missing).

    The file is created with mode 0600 atomically (``O_EXCL``), so two processes
    starting at once agree on one key; an existing file readable by others is refused.
    """
    if settings.secret_key:
        return settings.secret_key
    path = settings.secret_key_file
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            stream.write(secrets.token_hex(32) + "\n")
        logger.info("generated the web secret key", extra={"path": str(path)})
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(
            f"the web secret key file {path} is readable by others (mode {mode:o}): "
            f"chmod 600 {path}"
        )
    key = path.read_text().strip()
    if len(key) < 32:
        raise ConfigError(f"the web secret key in {path} is too short (32 characters at least)")
    return key
