"""Pseudonyms, masking, and seals: a changed byte or a borrowed key is always caught.

Every event type is sealed (hashed into its chain and signed), sent through the
serde, and checked; then each field in turn is altered after sealing and the check
must fail with `bad_hash`, and a signature by anyone but the named agency with
`bad_signature`.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.crypto import (
    Keystore,
    mask_id,
    mask_name,
    normalise_national_id,
    pseudonymise,
    public_key_of,
    sign,
    verify_signature,
)
from services.core.errors import ConfigurationError
from services.core.events import ALL_EVENTS, Envelope, Event
from services.core.sealing import check_seal, hash_of_record, seal
from services.core.serde import decode_full, encode, registry, to_record
from tests.support.golden.samples import SAMPLES, encode_with
from tests.unit.core.model_strategies import field_strategy

KEY = b"k" * 32
SEAL_FIELDS = ("hash", "signature")


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    store = Keystore(tmp_path_factory.mktemp("keys"))
    store.create(["court", "luoshan-police"])
    return store


# --- the Ed25519 primitive: libsodium signs and checks what OpenSSL does ------------------------


@settings(max_examples=50)
@given(seed=st.binary(min_size=32, max_size=32), digest=st.binary(min_size=32, max_size=32))
def test_libsodium_signs_exactly_as_openssl_and_each_checks_the_other(seed: bytes, digest: bytes) -> None:
    """Events sealed before the switch must still check out, and anyone checking with OpenSSL
    must accept ours: Ed25519 is deterministic, so the two signatures are byte for byte equal."""
    private = Ed25519PrivateKey.from_private_bytes(seed)
    theirs = base64.b64encode(private.sign(digest)).decode()
    assert sign(private, digest.hex()) == theirs
    assert verify_signature(digest.hex(), theirs, public_key_of(private))
    private.public_key().verify(base64.b64decode(sign(private, digest.hex())), digest)  # raises if not


def test_a_signature_of_another_digest_key_or_length_is_refused() -> None:
    private, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    digest = "ab" * 32
    signature = sign(private, digest)
    raw = base64.b64decode(signature)
    assert verify_signature(digest, signature, public_key_of(private))
    assert not verify_signature("ac" + digest[2:], signature, public_key_of(private))
    assert not verify_signature(digest, signature, public_key_of(other))
    # A signature one byte short, over a "digest" that starts with that byte: libsodium alone
    # would read the two as the signature of the digest's tail, which the key did sign.
    tail = bytes(31)
    signed_tail = private.sign(tail)
    shifted = (signed_tail[63:] + tail).hex()
    assert not verify_signature(shifted, base64.b64encode(signed_tail[:63]).decode(), public_key_of(private))
    assert not verify_signature(digest, base64.b64encode(raw + b"\x00").decode(), public_key_of(private))
    assert not verify_signature("not hex", signature, public_key_of(private))


# --- pseudonyms and masking ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "42010219900101123X",
        "42010219900101123x",
        "420102 19900101 123x",
        "420102-19900101-123X",
        " 420102199001 01123X\t",
    ],
)
def test_a_pseudonym_is_the_same_for_every_spelling_of_an_id(spelling: str) -> None:
    assert pseudonymise(spelling, KEY) == pseudonymise("42010219900101123X", KEY)


def test_a_pseudonym_depends_on_the_key_and_hides_the_id() -> None:
    ref = pseudonymise("42010219900101123X", KEY)
    assert ref != pseudonymise("42010219900101123X", b"another key")
    assert ref != pseudonymise("420102199001011230", KEY)
    assert ref.startswith("s-") and "4201021990" not in ref


def test_pseudonymising_without_a_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="ACCORD_PSEUDONYM_KEY"):
        pseudonymise("42010219900101123X", b"")


def test_masking_keeps_only_what_a_desk_officer_needs() -> None:
    assert mask_name("Yu Hua") == "Y* H**"
    assert mask_name("张三丰") == "张**"
    assert mask_id("420102-19900101-123x") == "420*************3X"
    assert mask_id("12345") == "*****"
    assert normalise_national_id(" 4201 02-x ") == "420102X"


# --- seals ---------------------------------------------------------------------------------------


def sealed(event: Event, keystore: Keystore, agency: str = "court", prev: str = "p" * 64) -> Event:
    envelope = event.envelope.model_copy(update={"agency": agency, "hash": "", "signature": ""})
    return seal(event.model_copy(update={"envelope": envelope}), prev, keystore.private(agency))


def check(event: Event, public_key: str) -> tuple[str, str] | None:
    return check_seal(decode_full(encode(event)), public_key)


@pytest.mark.parametrize("name", sorted(ALL_EVENTS))
def test_a_sealed_event_checks_out_after_the_wire(name: str, keystore: Keystore) -> None:
    event = sealed(SAMPLES[name], keystore)
    assert event.envelope.prev_hash == "p" * 64
    assert check(event, public_key_of(keystore.private("court"))) is None


def _altered(event: Event, path: tuple[str, ...], value: Any) -> Event:
    if path[0] == "envelope":
        return event.model_copy(update={"envelope": event.envelope.model_copy(update={path[1]: value})})
    return event.model_copy(update={path[0]: value})


def _fields(cls: type[Event]) -> list[tuple[str, ...]]:
    payload: list[tuple[str, ...]] = [(name,) for name in cls.model_fields if name != "envelope"]
    envelope = [("envelope", name) for name in Envelope.model_fields if name not in SEAL_FIELDS]
    return payload + envelope


@pytest.mark.parametrize(
    ("name", "path"), [(name, path) for name in sorted(ALL_EVENTS) for path in _fields(ALL_EVENTS[name])]
)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_altering_any_field_after_sealing_breaks_the_hash(
    name: str, path: tuple[str, ...], data: st.DataObject, keystore: Keystore
) -> None:
    event = sealed(SAMPLES[name], keystore)
    model = Envelope if path[0] == "envelope" else type(event)
    old = getattr(event.envelope, path[1]) if path[0] == "envelope" else getattr(event, path[0])
    new = data.draw(field_strategy(model.model_fields[path[-1]]).filter(lambda v: bool(v != old)))
    problem = check(_altered(event, path, new), public_key_of(keystore.private("court")))
    assert problem is not None and problem[0] == "bad_hash", f"altering {'.'.join(path)} went unnoticed"


@pytest.mark.parametrize("name", sorted(ALL_EVENTS))
def test_a_replaced_hash_or_signature_is_caught(name: str, keystore: Keystore) -> None:
    event = sealed(SAMPLES[name], keystore)
    court = public_key_of(keystore.private("court"))
    rehashed = _altered(event, ("envelope", "hash"), "0" * 64)
    assert check(rehashed, court)[0] == "bad_hash"  # type: ignore[index]
    other = base64.b64encode(Ed25519PrivateKey.generate().sign(bytes.fromhex(event.envelope.hash))).decode()
    assert check(_altered(event, ("envelope", "signature"), other), court)[0] == "bad_signature"  # type: ignore[index]


def test_another_agencys_key_is_a_bad_signature(keystore: Keystore) -> None:
    """The police sign an event that names the court as its author: the court's key refuses it."""
    event = SAMPLES["ListingRevoked"]
    envelope = event.envelope.model_copy(update={"agency": "court", "hash": "", "signature": ""})
    forged = seal(event.model_copy(update={"envelope": envelope}), "", keystore.private("luoshan-police"))
    keys = {a: public_key_of(keystore.private(a)) for a in ("court", "luoshan-police")}
    assert check(forged, keys["court"])[0] == "bad_signature"  # type: ignore[index]
    assert check(sealed(event, keystore), keys["luoshan-police"])[0] == "bad_signature"  # type: ignore[index]
    assert check(sealed(event, keystore), "")[0] == "unknown_key"  # type: ignore[index]


def test_an_event_sealed_under_an_old_schema_still_checks_out(keystore: Keystore) -> None:
    """The hash covers the writer's bytes: a v1 event verifies after v2 became current."""
    event = SAMPLES["ListingIssued"]
    v1 = registry().versions[1]["ListingIssued"].schema
    unsealed = event.model_copy(
        update={"envelope": event.envelope.model_copy(update={"request_id": None, "prev_hash": ""})}
    )
    digest = hash_of_record(v1, to_record(unsealed))
    signature = base64.b64encode(keystore.private("luoshan-police").sign(bytes.fromhex(digest))).decode()
    envelope = unsealed.envelope.model_copy(update={"hash": digest, "signature": signature})
    decoded = decode_full(encode_with(1, unsealed.model_copy(update={"envelope": envelope})))
    assert decoded.writer.version == 1
    assert check_seal(decoded, public_key_of(keystore.private("luoshan-police"))) is None
