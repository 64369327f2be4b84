"""One connection object configures every client: librdkafka, Faust, and child processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust import SASLCredentials
from pydantic import SecretStr

from services.core.connection import SECURITY_VARIABLES, KafkaConnection
from services.core.settings import KafkaSettings

SECURED = KafkaConnection(
    "h:9093", "SASL_SSL", "SCRAM-SHA-512", "t1.court", SecretStr("pw"), ca_file=Path("/ca.pem")
)


def test_librdkafka_gets_protocol_mechanism_credentials_and_ca() -> None:
    config = SECURED.client_config(**{"acks": "all"})
    assert config == {
        "bootstrap.servers": "h:9093", "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "t1.court", "sasl.password": "pw", "ssl.ca.location": "/ca.pem", "acks": "all",
    }  # fmt: skip
    assert KafkaConnection("h:9092").client_config() == {
        "bootstrap.servers": "h:9092",
        "security.protocol": "PLAINTEXT",
    }


def environment(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    """Exactly `variables` of the security ones (a session broker may have set others)."""
    for name in SECURITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def test_the_environment_rebuilds_the_same_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    environment(monkeypatch, SECURED.environment())
    assert KafkaSettings().connection == SECURED
    assert "pw" not in repr(SECURED) and "pw" not in str(SECURED)


def test_a_password_file_is_read_when_no_password_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    env = {**SECURED.environment(), "ACCORD_KAFKA_PASSWORD_FILE": str(tmp_path / "pw")}
    env.pop("ACCORD_KAFKA_PASSWORD")
    environment(monkeypatch, env)
    password = KafkaSettings().connection.password
    assert password is not None and password.get_secret_value() == "from-file"


def test_faust_gets_scram_over_tls(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    from services.localkafka.security import BrokerSecrets

    BrokerSecrets(tmp_path / "s").ensure().ca_file.replace(ca)
    credentials = KafkaConnection(
        "h:9093", "SASL_SSL", username="u", password=SecretStr("p"), ca_file=ca
    ).faust_credentials()
    assert isinstance(credentials, SASLCredentials)
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.protocol.value == "SASL_SSL"
    assert credentials.ssl_context is not None and credentials.username == "u"
    assert KafkaConnection("h:9092").faust_credentials() is None


def test_groups_are_prefixed_by_the_principal() -> None:
    assert SECURED.group("copy") == "t1.court.copy"
    assert KafkaConnection("h:9092").group("copy") == "accord-copy"


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="SASL_SSL"):
        KafkaConnection("h:9092", "SASL_TLS")
