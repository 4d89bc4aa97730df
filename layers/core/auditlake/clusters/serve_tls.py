"""A TLS certificate for ``auditlake serve`` when kube-apiserver reaches it beyond the loopback.

Contract: ``issue_serve_cert(host)`` makes a private CA and a server certificate signed by it for
``host`` (an IP address or a DNS name) plus 127.0.0.1/localhost, and returns both as PEM with the
server's key. The CA's private key is never returned or written: nothing else can ever be signed
by it, so the webhook kubeconfig that trusts this CA (certificate-authority-data) trusts only this
one certificate. A new host means a new CA (``covers`` tells whether an existing certificate
still fits).

Why not a self-signed leaf: Go's TLS client (kube-apiserver's webhook client) verifies a chain to a
CA with ``basicConstraints CA:TRUE``; a leaf that is its own CA works with some clients only. Go also
ignores the Common Name, so every name is a subjectAltName.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 365
# A certificate closer than this to its end is replaced rather than reused.
RENEW_BEFORE = timedelta(days=30)
LOOPBACK_NAMES = ("127.0.0.1", "localhost")  # so `auditlake replay --ca-file` on this machine verifies too


_CA_KEY_USAGE = x509.KeyUsage(
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


@dataclass(frozen=True)
class ServeCert:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes  # the server's private key: written 0600, never printed


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue_serve_cert(host: str, *, now: datetime | None = None, days: int = VALID_DAYS) -> ServeCert:
    """A fresh CA and a server certificate for ``host`` (and the loopback), valid ``days`` from ``now``."""
    now = now or datetime.now(UTC)
    not_before = now - timedelta(minutes=5)  # a node clock slightly behind still accepts it
    not_after = now + timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"auditlake serve CA for {host}")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [host, *(n for n in LOOPBACK_NAMES if n != host)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ServeCert(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def covers(cert_pem: bytes, host: str, *, now: datetime | None = None) -> bool:
    """Whether an existing serve certificate names ``host`` and stays valid for RENEW_BEFORE more."""
    now = now or datetime.now(UTC)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    if cert.not_valid_after_utc - RENEW_BEFORE < now:
        return False
    return _general_name(host) in list(sans)
