"""Settings shared by every service, built from the environment in an entry point, never at import."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.connection import DEFAULT_MECHANISM, KafkaConnection
from services.core.crypto import AgencyKey, Keystore, TrustAnchor
from services.core.errors import ConfigurationError
from services.core.policy import Policy, load_policy
from services.core.topics import BACKBONE, Topics


class KafkaSettings(BaseSettings):
    """Where the broker is, how a client authenticates to it, and how topics are laid out.

    Security (README "Security"): `ACCORD_KAFKA_SECURITY_PROTOCOL` (PLAINTEXT, SSL,
    SASL_PLAINTEXT, SASL_SSL), `ACCORD_KAFKA_SASL_MECHANISM` (SCRAM-SHA-512 by default),
    `ACCORD_KAFKA_USERNAME`, `ACCORD_KAFKA_PASSWORD` or `ACCORD_KAFKA_PASSWORD_FILE`,
    `ACCORD_KAFKA_CA_FILE`, and for mutual TLS `ACCORD_KAFKA_CERT_FILE`/`ACCORD_KAFKA_KEY_FILE`.
    """

    model_config = SettingsConfigDict(
        env_prefix="ACCORD_", frozen=True, extra="ignore", populate_by_name=True
    )

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "ACCORD_BOOTSTRAP_SERVERS"),
    )
    namespace: str = ""
    partitions: int = 3
    replication_factor: int = 1
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", validation_alias="ACCORD_KAFKA_SECURITY_PROTOCOL"
    )
    sasl_mechanism: str = Field(default=DEFAULT_MECHANISM, validation_alias="ACCORD_KAFKA_SASL_MECHANISM")
    username: str | None = Field(default=None, validation_alias="ACCORD_KAFKA_USERNAME")
    password: SecretStr | None = Field(default=None, validation_alias="ACCORD_KAFKA_PASSWORD")
    password_file: Path | None = Field(default=None, validation_alias="ACCORD_KAFKA_PASSWORD_FILE")
    ca_file: Path | None = Field(default=None, validation_alias="ACCORD_KAFKA_CA_FILE")
    cert_file: Path | None = Field(default=None, validation_alias="ACCORD_KAFKA_CERT_FILE")
    key_file: Path | None = Field(default=None, validation_alias="ACCORD_KAFKA_KEY_FILE")

    @property
    def topics(self) -> Topics:
        return Topics(self.namespace)

    @property
    def connection(self) -> KafkaConnection:
        """What every client of this deployment is built from (services/core/connection.py)."""
        return KafkaConnection(
            bootstrap=self.bootstrap_servers,
            protocol=self.security_protocol,
            mechanism=self.sasl_mechanism,
            username=self.username,
            password=self._password(),
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
        )

    def _password(self) -> SecretStr | None:
        if self.password is not None or self.password_file is None:
            return self.password
        return SecretStr(self.password_file.read_text().strip())

    @classmethod
    def of(cls, connection: KafkaConnection, **layout: Any) -> KafkaSettings:
        """Settings for an explicit connection (tests, the backbone), ignoring the environment's."""
        return cls(
            bootstrap_servers=connection.bootstrap,
            security_protocol=connection.protocol,  # type: ignore[arg-type]
            sasl_mechanism=connection.mechanism,
            username=connection.username,
            password=connection.password,
            password_file=None,
            ca_file=connection.ca_file,
            cert_file=connection.cert_file,
            key_file=connection.key_file,
            **layout,
        )


class SecretSettings(BaseSettings):
    """Keys that must never live in the repository."""

    model_config = SettingsConfigDict(env_prefix="ACCORD_", frozen=True, extra="ignore")

    pseudonym_key: SecretStr = Field(
        default=SecretStr(""),
        description="key of the keyed hash that turns a national id into a subject_ref",
    )
    http_token: SecretStr = Field(
        default=SecretStr(""),
        description="env ACCORD_HTTP_TOKEN: the bearer token this process shows Accord's HTTP servers "
        "(the reconciler's, for the copies' probes)",
    )


def state_root() -> Path:
    """Where local state lives (keys, local broker, backbone): `ACCORD_STATE_DIR` or ~/.local/state/accord."""
    return Path(os.environ.get("ACCORD_STATE_DIR") or Path.home() / ".local" / "state" / "accord")


class KeystoreSettings(BaseSettings):
    """Who signs and whom to believe: one agency's signing key, the trust anchor, HTTP credentials.

    The backbone's services read the trust anchor (public keys) and the backbone's own
    key only; a publisher reads its one agency's key. `keystore` is the folder of private
    keys `accord keys init` makes (every agency's, on a development machine).
    """

    model_config = SettingsConfigDict(env_prefix="ACCORD_", frozen=True, extra="ignore")

    keystore: Path = Field(default_factory=lambda: state_root() / "keys", description="env ACCORD_KEYSTORE")
    trust_anchor: Path = Field(
        default_factory=lambda: state_root() / "trust" / "public_keys.yaml",
        description="env ACCORD_TRUST_ANCHOR: public keys, in a folder only the backbone may change",
    )
    signing_key_file: Path | None = Field(
        default=None, description="env ACCORD_SIGNING_KEY_FILE: the one agency key a publisher signs with"
    )
    backbone_key_file: Path = Field(
        default_factory=lambda: state_root() / "backbone" / "keys" / f"{BACKBONE}.key",
        description="env ACCORD_BACKBONE_KEY_FILE: the backbone's own signing key (the ledger's expiries)",
    )
    credentials_file: Path = Field(
        default_factory=lambda: state_root() / "credentials.yaml",
        description="env ACCORD_CREDENTIALS_FILE: hashes of the bearer tokens an HTTP server accepts",
    )

    def policy_with_keys(self) -> Policy:
        """The repository's policy with every agency's trusted public key."""
        return load_policy().with_public_keys(TrustAnchor(self.trust_anchor).public_keys())

    def agency_key(self, policy: Policy) -> AgencyKey:
        """The publisher's one signing key, and the agency it belongs to (by its registered public key)."""
        if self.signing_key_file is None:
            raise ConfigurationError(
                "no signing key: set ACCORD_SIGNING_KEY_FILE to your agency's key file (`accord keys init`)"
            )
        return AgencyKey.load(self.signing_key_file, {a.id: a.public_key for a in policy.agencies})

    def backbone_key(self) -> Ed25519PrivateKey:
        return Keystore(self.backbone_key_file.parent).private(self.backbone_key_file.stem)

    def create_local(self, agencies: list[str]) -> dict[str, str]:
        """One machine plays every part: each agency's key in `keystore`, the backbone's apart."""
        public = Keystore(self.keystore).create([a for a in agencies if a != BACKBONE])
        public.update(Keystore(self.backbone_key_file.parent).create([self.backbone_key_file.stem]))
        return TrustAnchor(self.trust_anchor).register(public)
