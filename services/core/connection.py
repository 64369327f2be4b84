"""How a client reaches Kafka: the address and the credentials, in one frozen object.

Every producer, consumer and admin client (confluent-kafka) and the ledger's Faust app
(aiokafka) is configured from a `KafkaConnection`, so security is decided in one place:
`client_config` for librdkafka, `faust_credentials` for Faust, `environment` for a child
process. Built from `KafkaSettings.connection` (the environment) or by the local launcher.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from services.core import logs

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
DEFAULT_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class KafkaConnection:
    """Bootstrap servers plus the one way this client proves who it is."""

    bootstrap: str
    protocol: str = "PLAINTEXT"
    mechanism: str = DEFAULT_MECHANISM
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"security protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol.endswith("SSL")

    @property
    def principal(self) -> str:
        """Who the broker will see (for messages and ACLs); ANONYMOUS without credentials."""
        return f"User:{self.username}" if self.uses_sasl and self.username else "User:ANONYMOUS"

    def group(self, purpose: str) -> str:
        """A consumer-group (or transactional) id of this principal's own: ACLs grant
        `<username>.` as a prefix, so no principal can join or commit in another's group."""
        return f"{self.username}.{purpose}" if self.username else f"accord-{purpose}"

    def as_user(self, username: str, password: str | SecretStr) -> KafkaConnection:
        """The same cluster, another principal (a service or an agency)."""
        secret = password if isinstance(password, SecretStr) else SecretStr(password)
        return replace(self, username=username, password=secret)

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka's (confluent-kafka's) configuration: every client starts from this."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap, "security.protocol": self.protocol}
        if self.uses_sasl:
            config["sasl.mechanism"] = self.mechanism
            config["sasl.username"] = self.username or ""
            config["sasl.password"] = self.password.get_secret_value() if self.password else ""
        if self.uses_tls:
            config.update(_tls_files(self))
        if logs.wants_json():  # librdkafka's own lines through Python's logging, so they are JSON too
            config["logger"] = logging.getLogger("accord.kafka")
        return {**config, **extra}

    def ssl_context(self) -> ssl.SSLContext | None:
        """What aiokafka needs for TLS: the CA to trust, and our certificate for mutual TLS."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file:
            context.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return context

    def faust_credentials(self) -> CredentialsT | None:
        """Faust's `broker_credentials`: SASL (over TLS or not), TLS alone, or none."""
        from faust import SASLCredentials, SSLCredentials

        if self.uses_sasl:
            secret = self.password.get_secret_value() if self.password else None
            return SASLCredentials(
                username=self.username,
                password=secret,
                mechanism=self.mechanism,
                ssl_context=self.ssl_context(),
            )
        context = self.ssl_context()
        return SSLCredentials(context) if context is not None else None

    def environment(self) -> dict[str, str]:
        """The variables `KafkaSettings` reads: how a child process gets this same connection."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "ACCORD_KAFKA_SECURITY_PROTOCOL": self.protocol}
        optional = {
            "ACCORD_KAFKA_SASL_MECHANISM": self.mechanism if self.uses_sasl else None,
            "ACCORD_KAFKA_USERNAME": self.username,
            "ACCORD_KAFKA_PASSWORD": self.password.get_secret_value() if self.password else None,
            "ACCORD_KAFKA_CA_FILE": self.ca_file,
            "ACCORD_KAFKA_CERT_FILE": self.cert_file,
            "ACCORD_KAFKA_KEY_FILE": self.key_file,
        }
        return {**env, **{name: str(value) for name, value in optional.items() if value is not None}}

    def __str__(self) -> str:
        return f"{self.bootstrap} ({self.protocol}, {self.principal})"


def _tls_files(connection: KafkaConnection) -> dict[str, str]:
    files = {
        "ssl.ca.location": connection.ca_file,
        "ssl.certificate.location": connection.cert_file,
        "ssl.key.location": connection.key_file,
    }
    return {name: str(path) for name, path in files.items() if path is not None}


# Every variable `environment` may set: a child that must not inherit a connection drops these.
SECURITY_VARIABLES = (
    "ACCORD_KAFKA_SECURITY_PROTOCOL",
    "ACCORD_KAFKA_SASL_MECHANISM",
    "ACCORD_KAFKA_USERNAME",
    "ACCORD_KAFKA_PASSWORD",
    "ACCORD_KAFKA_PASSWORD_FILE",
    "ACCORD_KAFKA_CA_FILE",
    "ACCORD_KAFKA_CERT_FILE",
    "ACCORD_KAFKA_KEY_FILE",
)
