"""The wheel of the scheduler's own scitq, served to the instances it recruits.

A recruited machine must run exactly the scitq the scheduler runs (its SQL API version,
its agent protocol). The scheduler finds that wheel (``[scheduler] agent_wheel``, or one
it builds from the source tree it runs from), checks that its version is the running
one, and serves it over HTTP at ``wheel_listen``; the instances' user data names its URL
and sha256, which the instance checks before installing. The server answers ``GET`` and
``HEAD`` of that one file and nothing else: it holds no secret.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from scitq.config import SchedulerSettings, TransferSettings
from scitq.errors import ConfigError
from scitq.scheduler.providers.cloudinit import Bootstrap, forwarded_credentials
from scitq.version import __version__

logger = logging.getLogger(__name__)

_WHEEL_NAME = re.compile(r"^scitq-(?P<version>[^-]+)-[^-]+-[^-]+-[^-]+\.whl$")


@dataclass(frozen=True, slots=True)
class AgentWheel:
    """A wheel of scitq: its file, version and sha256."""

    path: Path
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        return self.path.name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checked_wheel(path: Path) -> AgentWheel:
    """``path`` as the agents' wheel, if it is a scitq wheel of the running version.

    Raises:
        ConfigError: missing, not a scitq wheel, or of another version.
    """
    found = _WHEEL_NAME.match(path.name)
    if not path.is_file() or found is None:
        raise ConfigError(f"[scheduler] agent_wheel {path} is not a scitq wheel file")
    version = found["version"].replace("_", "-")
    if version != __version__:
        raise ConfigError(
            f"[scheduler] agent_wheel {path} is scitq {version}; this scheduler runs "
            f"scitq {__version__}, and its agents must run the same"
        )
    return AgentWheel(path, version, _sha256(path))


def source_tree() -> Path | None:
    """The project directory scitq runs from (a development install), or None."""
    root = Path(__file__).resolve().parents[2]  # scitq/scheduler/wheel_server.py
    project = root / "pyproject.toml"
    if project.is_file() and 'name = "scitq"' in project.read_text(encoding="utf-8"):
        return root
    return None


def build_wheel(directory: Path) -> AgentWheel:
    """Build the wheel of the running scitq from its source tree into ``directory``.

    Raises:
        ConfigError: scitq does not run from a source tree, or the build failed.
    """
    root = source_tree()
    if root is None:
        raise ConfigError(
            "scitq is not installed from a source tree: set [scheduler] agent_wheel to the "
            f"wheel of scitq {__version__} (the file you installed, or pip download "
            f"scitq=={__version__} --no-deps)"
        )
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", directory]
    result = subprocess.run(
        [*map(str, command), str(root)], capture_output=True, text=True, timeout=600
    )
    wheels = sorted(directory.glob("scitq-*.whl"))
    if result.returncode != 0 or not wheels:
        tail = " ".join(result.stderr.split()[-30:])
        raise ConfigError(f"cannot build the agents' wheel from {root}: {tail}")
    return checked_wheel(wheels[-1])


class WheelServer:
    """Serves one wheel over HTTP in a thread of the scheduler."""

    def __init__(self, listen: str, base_url: str | None, configured: Path | None) -> None:
        """Serve ``configured`` (or a wheel built from the source tree) at ``listen``
        (``host:port``); ``base_url`` is how instances reach it (None: from ``listen``)."""
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"[scheduler] wheel_listen {listen!r} must be host:port")
        self._listen = (host.strip("[]"), int(port))
        self._base_url = base_url.rstrip("/") if base_url else None
        self._configured = configured
        self._build_dir: Path | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self.wheel: AgentWheel | None = None

    @property
    def url(self) -> str:
        """The wheel's URL, as instances use it."""
        assert self.wheel is not None and self._httpd is not None
        base = self._base_url
        if base is None:
            host, port = self._listen[0], self._httpd.server_port
            base = f"http://{host}:{port}"
        return f"{base}/{self.wheel.filename}"

    def start(self) -> WheelServer:
        """Find or build the wheel, then listen.

        Raises:
            ConfigError: no wheel of this version, or the address cannot be bound.
        """
        if self._configured is not None:
            self.wheel = checked_wheel(self._configured)
        else:
            self._build_dir = Path(tempfile.mkdtemp(prefix="scitq-agent-wheel-"))
            self.wheel = build_wheel(self._build_dir)
        handler = type("Handler", (_Handler,), {"wheel": self.wheel})
        try:
            self._httpd = ThreadingHTTPServer(self._listen, handler)
        except OSError as error:
            raise ConfigError(
                f"cannot serve the agents' wheel on {self._listen}: {error}"
            ) from error
        threading.Thread(target=self._httpd.serve_forever, name="wheel-server", daemon=True).start()
        logger.info(
            "serving scitq %s to recruited instances at %s (sha256 %s)",
            self.wheel.version, self.url, self.wheel.sha256,
            extra={"action": "wheel_server"},
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._build_dir is not None:
            shutil.rmtree(self._build_dir, ignore_errors=True)
            self._build_dir = None


class _Handler(BaseHTTPRequestHandler):
    wheel: AgentWheel

    def _answer(self, body: bool) -> None:
        if self.path.split("?", 1)[0] != f"/{self.wheel.filename}":
            self.send_error(404, "only the scitq wheel is served here")
            return
        size = self.wheel.path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("X-Checksum-Sha256", self.wheel.sha256)
        self.end_headers()
        if body:
            with self.wheel.path.open("rb") as stream:
                shutil.copyfileobj(stream, self.wfile)
            logger.info("agents' wheel sent to %s", self.client_address[0])

    def do_GET(self) -> None:
        self._answer(True)

    def do_HEAD(self) -> None:
        self._answer(False)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("wheel server: " + format, *args)


def agent_bootstrap(
    settings: SchedulerSettings, transfer: TransferSettings | None
) -> tuple[Bootstrap, WheelServer | None]:
    """What recruited instances get besides their spec (the wheel's URL and sha256, the
    forwarded storage credentials), and the started wheel server (None when off).

    Raises:
        ConfigError: the wheel server is asked for but cannot start.
    """
    environment, rclone = forwarded_credentials(transfer or TransferSettings())
    if settings.wheel_listen is None:
        return Bootstrap(version=__version__, environment=environment, rclone_config=rclone), None
    server = WheelServer(settings.wheel_listen, settings.wheel_url, settings.agent_wheel).start()
    assert server.wheel is not None
    bootstrap = Bootstrap(
        version=__version__, wheel_url=server.url, wheel_sha256=server.wheel.sha256,
        environment=environment, rclone_config=rclone,
    )  # fmt: skip
    return bootstrap, server
