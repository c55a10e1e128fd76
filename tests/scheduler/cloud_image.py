"""A local stand-in for a cloud image: Debian 12 with systemd and cloud-init, as a podman
image booted with systemd as PID 1 (no registry, no real VM: built here with mmdebstrap
from Debian's packages, then ``podman import``).

Like the images labs make for their clouds, it has scitq's *dependencies* pre-installed
in ``/opt/scitq`` (so that CI does not download them on every boot); scitq itself is
not in it: the user data installs it from the scheduler's wheel server. The image is
built once per recipe and dependency list (its tag holds their hash) and stays in
podman's store: later runs reuse it.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

#: Debian packages of the image: a systemd machine with cloud-init, as cloud images are.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "cloud-init", "python3", "python3-venv",
            "ca-certificates", "locales", "procps")  # fmt: skip
RECIPE = "1"  # bump to rebuild the cached image after changing what it holds


def requirements(wheel: Path) -> list[str]:
    """The unconditional requirements of a wheel (its ``Requires-Dist`` without extras)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode())
    return sorted(r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r)


def containers_conf(directory: Path) -> Path:
    """A podman configuration for machines that forbid raising resource limits (the
    limits as they are, and runc), as tests/agent/test_containers.py does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lines = ["[containers]", f'default_ulimits = ["nofile={soft}:{hard}", "nproc=4096:4096"]']
    if shutil.which("runc"):
        lines += ["[engine]", 'runtime = "runc"']
    path = directory / "containers.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def image_tag(wheel: Path) -> str:
    digest = hashlib.sha256("\n".join([RECIPE, *PACKAGES, *requirements(wheel)]).encode())
    return f"localhost/scitq-test-cloud-image:{digest.hexdigest()[:12]}"


def ensure_image(podman: str, wheel: Path, env: dict[str, str]) -> str:
    """The tag of the cloud image for ``wheel``'s dependencies, built when missing.

    Raises:
        RuntimeError: mmdebstrap is missing or the build failed (its output tail).
    """
    tag = image_tag(wheel)
    if subprocess.run([podman, "image", "exists", tag], env=env).returncode == 0:
        return tag
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise RuntimeError("mmdebstrap is not installed (apt-get install mmdebstrap)")
    wanted = requirements(wheel)
    pip = " ".join(f"'{r}'" for r in wanted)
    with tempfile.TemporaryDirectory(prefix="scitq-cloud-image-", dir="/var/tmp") as work:
        # the dependencies are fetched by this machine's pip (its index and certificates),
        # then installed in the image from that folder alone
        wheels = Path(work) / "wheels"
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
             "-d", str(wheels), *wanted],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if fetched.returncode != 0:
            raise RuntimeError(f"pip download failed: {fetched.stderr[-2000:]}")
        rootfs = Path(work) / "rootfs.tar"
        build = [
            mmdebstrap, "--variant=apt", "--include=" + ",".join(PACKAGES),
            '--customize-hook=chroot "$1" python3 -m venv /opt/scitq',
            f"--customize-hook=copy-in {wheels} /tmp",
            '--customize-hook=chroot "$1" /opt/scitq/bin/pip install --quiet --no-index '
            f"--find-links /tmp/wheels {pip}",
            '--customize-hook=rm -r "$1/tmp/wheels"',
            # a machine identity of its own at each boot, as a fresh cloud machine has
            '--customize-hook=truncate -s 0 "$1/etc/machine-id"',
            "bookworm", str(rootfs),
        ]  # fmt: skip
        done = subprocess.run(build, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            raise RuntimeError(f"mmdebstrap failed: {done.stderr[-2000:]}")
        imported = subprocess.run(
            [podman, "import", "--change", 'CMD ["/sbin/init"]', str(rootfs), tag],
            capture_output=True, text=True, timeout=600, env=env,
        )  # fmt: skip
        if imported.returncode != 0:
            raise RuntimeError(f"podman import failed: {imported.stderr[-2000:]}")
    return tag


def instance_mounts(directory: Path, registry: str) -> list[str]:
    """``podman run`` options giving a booted instance what a lab's image would carry for
    its containers: the test registry (plain HTTP) marked insecure, this machine's limits
    (``containers.conf``), and an image store on the host's file system (nested podman's
    overlay driver cannot stack on the outer container's overlay)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "store").mkdir(exist_ok=True)
    registries = directory / "registries.conf"
    registries.write_text(f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n')
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    conf = directory / "containers.conf"
    conf.write_text(
        f'[containers]\ndefault_ulimits = ["nofile={soft}:{hard}", "nproc=4096:4096"]\n'
        '[engine]\ncgroup_manager = "cgroupfs"\n'
    )
    return [
        "-v", f"{registries}:/etc/containers/registries.conf.d/50-lab.conf:ro",
        "-v", f"{conf}:/etc/containers/containers.conf:ro",
        "-v", f"{directory / 'store'}:/var/lib/containers",
    ]  # fmt: skip


def podman_env(directory: Path) -> dict[str, str]:
    """The environment podman runs in here (``CONTAINERS_CONF`` for restricted machines)."""
    return {**os.environ, "CONTAINERS_CONF": str(containers_conf(directory))}
