# -*- test-case-name: tests.test_tls -*-
"""
Throwaway self-signed certificates for tests that run chatd over TLS.

A certificate is made at test time, in a directory the test owns, and is
never written into the checkout: no key is ever committed.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.endpoints import quoteStringArgument

HOSTNAME = "localhost"
"""The name the certificates are made out to (with the IP 127.0.0.1)."""

VALIDITY = datetime.timedelta(days=1)
"""How long a test certificate is valid for."""


@dataclass(frozen=True)
class SelfSigned:
    """
    A self-signed certificate for C{localhost} and C{127.0.0.1}, and its key,
    as PEM files.
    """

    key: Path
    cert: Path

    def endpoint(self, port: int = 0, interface: str = "127.0.0.1") -> str:
        """
        An C{ssl:} endpoint description that serves this certificate.
        """
        return (
            f"ssl:{port}:interface={interface}"
            f":privateKey={quoteStringArgument(str(self.key))}"
            f":certKey={quoteStringArgument(str(self.cert))}"
        )

    def client_context(self, *alpn: str) -> ssl.SSLContext:
        """
        A client context that trusts this certificate alone and checks the
        host name, offering the application protocols C{alpn} (none by
        default) as browsers do.
        """
        context = ssl.create_default_context(cafile=str(self.cert))
        if alpn:
            context.set_alpn_protocols(alpn)
        return context


def make_self_signed(directory: Path) -> SelfSigned:
    """
    Make a new key (EC P-256) and a self-signed certificate for it, valid
    for a day, in C{directory} (as C{key.pem}, readable by its owner only,
    and C{cert.pem}).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(HOSTNAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        # What `openssl req -x509` makes: its own CA, so that clients can
        # trust it as their only root, even with strict verification.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    result = SelfSigned(key=directory / "key.pem", cert=directory / "cert.pem")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(result.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(key_pem)
    result.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return result
