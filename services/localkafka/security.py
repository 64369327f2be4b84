"""The local broker's secrets: a CA, the nodes' TLS identity, the super user's password.

Made once per state directory with the `cryptography` package and reused across restarts.
The CA's private key is thrown away after it signed the nodes' certificate: nothing local
can mint another certificate the nodes would trust. Every secret file is created 0600 and
the folder 0700 from the first byte (`services/core/files.py`), with no mode change afterwards.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from services.core.connection import KafkaConnection
from services.core.credentials import new_password
from services.core.files import SECRET_FILE, private_folder, replace_file

ADMIN = "admin"  # the one super user clients can authenticate as: administration only
BROKER_CN = "accord-broker"  # the nodes' own certificate (inter-broker and controller listeners)
MECHANISM = "SCRAM-SHA-512"
VALID_DAYS = 825


@dataclass(frozen=True)
class BrokerSecrets:
    """Where the local cluster's security material lives (one folder, 0700)."""

    folder: Path

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.folder / "broker.p12"

    @property
    def keystore_password_file(self) -> Path:
        return self.folder / "broker.p12.password"

    @property
    def node_key(self) -> Path:
        return self.folder / "node.key"

    @property
    def node_certificate(self) -> Path:
        return self.folder / "node.pem"

    @property
    def admin_password_file(self) -> Path:
        return self.folder / f"{ADMIN}.password"

    def ensure(self) -> BrokerSecrets:
        """Create whatever is missing; existing material is kept (a restart keeps its clients)."""
        private_folder(self.folder)
        made = (
            self.ca_file,
            self.keystore,
            self.keystore_password_file,
            self.node_key,
            self.node_certificate,
        )
        if not all(path.is_file() for path in made):
            self._issue()
        if not self.admin_password_file.is_file():
            replace_file(self.admin_password_file, new_password(), SECRET_FILE)
        return self

    def keystore_password(self) -> str:
        return self.keystore_password_file.read_text().strip()

    def admin_password(self) -> str:
        return self.admin_password_file.read_text().strip()

    def admin_connection(self, bootstrap: str) -> KafkaConnection:
        """The super user's connection to the cluster: for provisioning, never for a service."""
        return KafkaConnection(
            bootstrap, "SASL_SSL", MECHANISM, ADMIN, SecretStr(self.admin_password()), ca_file=self.ca_file
        )

    def node_connection(self, bootstrap: str) -> KafkaConnection:
        """The nodes' own identity (mutual TLS on their inter-broker listeners): a super user the
        launcher uses once per start, to give `admin` its SCRAM credential."""
        return KafkaConnection(
            bootstrap, "SSL", ca_file=self.ca_file, cert_file=self.node_certificate, key_file=self.node_key
        )

    def enroll_admin(self, as_nodes: AdminClient) -> None:
        """Create (or reset to its file) the super user's SCRAM credential. Done through the
        cluster, not by the storage formatter, whose command line anyone on the host can read."""
        upsert = UserScramCredentialUpsertion(
            ADMIN, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), self.admin_password().encode()
        )
        for future in as_nodes.alter_user_scram_credentials([upsert], request_timeout=30).values():
            future.result()

    def _issue(self) -> None:
        ca_key, node_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca_name = _name("accord local CA")
        ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, is_ca=True)
        node = _certificate(_name(BROKER_CN), ca_name, node_key.public_key(), ca_key, is_ca=False)
        password = new_password()
        bundle = pkcs12.serialize_key_and_certificates(
            BROKER_CN.encode(), node_key, node, [ca], serialization.BestAvailableEncryption(password.encode())
        )
        replace_file(self.keystore_password_file, password, SECRET_FILE)
        replace_file(self.keystore, bundle, SECRET_FILE)
        key = node_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        replace_file(self.node_key, key, SECRET_FILE)
        self.node_certificate.write_bytes(node.public_bytes(serialization.Encoding.PEM))
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
    *,
    is_ca: bool,
) -> x509.Certificate:
    """A CA certificate, or the nodes' certificate for 127.0.0.1/localhost (server and client use)."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if not is_ca:
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())
