"""The certificates `scitq db serve` presents: a certificate authority made once in the
data directory (``tls/ca.crt``, its key ``tls/ca.key`` readable by its owner only) and a
server certificate it signs for the names and addresses agents connect to, remade when
a name is missing or it nears its end. Agents verify the server with the CA
(``sslmode=verify-full sslrootcert=ca.crt``), so a machine in the middle cannot pose as
the database. Users with their own certificate give it instead (`TlsFiles`).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The server certificate is remade when it would end within this time.
_RENEW_BEFORE = datetime.timedelta(days=30)
_SERVER_DAYS = 397
_CA_DAYS = 3650
_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A server certificate and key, and the CA agents verify it with (None: a CA that
    agents already trust, ``sslrootcert=system``)."""

    cert: Path
    key: Path
    ca: Path | None


def _write(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)
    temporary.replace(path)


def _key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ensure_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = _name(f"scitq database CA ({socket.gethostname()})")
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_bytes(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def _alt_names(names: Iterable[str]) -> list[x509.GeneralName]:
    found: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            found.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            found.append(x509.DNSName(name))
    return found


def _covers(path: Path, wanted: list[x509.GeneralName]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    ends = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return ends > _RENEW_BEFORE and all(name in names for name in wanted)


def ensure_certificates(directory: Path, names: Iterable[str]) -> TlsFiles:
    """The CA (made on first use) and a server certificate valid for ``names`` (host
    names and IP addresses), in ``directory``."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    wanted = _alt_names(names)
    files = TlsFiles(directory / "server.crt", directory / "server.key", directory / "ca.crt")
    ca_cert, ca_key = _ensure_ca(directory)
    if _covers(files.cert, wanted) and files.key.exists():
        return files
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(socket.getfqdn()))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(wanted), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(files.key, _key_bytes(key), 0o600)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return files


def local_names(listen: str) -> list[str]:
    """The names and addresses agents may use to reach a server listening on ``listen``
    (PostgreSQL's ``listen_addresses`` syntax): for a wildcard, this host's names and
    every address of its interfaces."""
    addresses = [part.strip() for part in listen.split(",") if part.strip()]
    names = [socket.getfqdn(), socket.gethostname(), "localhost"]
    for address in addresses:
        if address in ("*", "0.0.0.0", "::"):
            for entries in psutil.net_if_addrs().values():
                names += [e.address.split("%")[0] for e in entries
                          if e.family in (socket.AF_INET, socket.AF_INET6)]  # fmt: skip
        else:
            names.append(address)
    return names


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 at least) presenting ``files``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert, files.key)
    return context
