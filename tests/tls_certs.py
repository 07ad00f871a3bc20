"""A private certificate authority for TLS tests: a CA, a server and a client certificate.

    files = write_tls_files(tmp_path / "tls")            # CA + server (localhost) + client
    other = write_tls_files(tmp_path / "other")          # an unrelated CA: a "wrong CA"
    args = triton_tls_args(files, mutual=True)           # tritonserver flags for gRPC over TLS

Keys are ECDSA P-256 (fast to make); certificates are valid from a day ago for a week. The
server certificate names `localhost` and `127.0.0.1`, so clients may use either.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one private CA and the certificates it signed."""

    ca: Path  # the CA certificate clients (and, for mutual TLS, the server) trust
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    extensions: Sequence[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def write_tls_files(
    folder: str | Path, hosts: Sequence[str] = DEFAULT_HOSTS, ca_name: str = "Grad-CAM test CA"
) -> TlsFiles:
    """Make a new CA and a server and a client certificate signed by it, as PEM in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate(
        ca_name,
        ca_key,
        _name(ca_name),
        ca_key,
        [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
        ],
    )
    leaf = [(x509.BasicConstraints(ca=False, path_length=None), True)]
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _certificate(
        hosts[0],
        server_key,
        ca_cert.subject,
        ca_key,
        [
            *leaf,
            (x509.SubjectAlternativeName([_san(host) for host in hosts]), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _certificate(
        "gradcam-test-client",
        client_key,
        ca_cert.subject,
        ca_key,
        [*leaf, (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
    )
    return TlsFiles(
        ca=_write_cert(folder / "ca.crt", ca_cert),
        server_cert=_write_cert(folder / "server.crt", server_cert),
        server_key=_write_key(folder / "server.key", server_key),
        client_cert=_write_cert(folder / "client.crt", client_cert),
        client_key=_write_key(folder / "client.key", client_key),
    )


def triton_tls_args(files: TlsFiles, *, mutual: bool = False) -> list[str]:
    """`tritonserver` flags serving gRPC over TLS (and asking clients for a certificate)."""
    args = [
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={files.server_cert}",
        f"--grpc-server-key={files.server_key}",
    ]
    if mutual:
        args += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={files.ca}"]
    return args
