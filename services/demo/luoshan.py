"""The Luoshan case as listing events: a county police bureau's travel ban, and its revocation.

Built and sealed here as the bureau's publisher would, so that `accord demo luoshan`
needs only the backbone. The subject is fictional; the story is docs/architecture.md §1.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from services.core.crypto import Keystore, mask_id, mask_name, pseudonymise
from services.core.events import Envelope, ListingIssued, ListingRevoked, RevocationReason
from services.core.sealing import seal

BUREAU = "luoshan-police"
ENFORCERS = ("civil-aviation", "railway")
NATIONAL_ID = "420106198001017715"  # fictional
NAME = "Yu Wenhua"  # fictional


def _envelope(listing_id: str, version: int, now: datetime) -> Envelope:
    return Envelope(event_id=str(uuid.uuid4()), listing_id=listing_id, version=version, agency=BUREAU,
                    occurred_at=now, recorded_at=now)  # fmt: skip


def marking(keystore: Keystore, pseudonym_key: bytes, now: datetime) -> ListingIssued:
    """The bureau marks the subject high-risk: no flights, no high-speed trains."""
    listing = ListingIssued(
        envelope=_envelope(f"luoshan-{uuid.uuid4().hex[:12]}", 1, now),
        subject_ref=pseudonymise(NATIONAL_ID, pseudonym_key),
        subject_kind="person",
        display_name=mask_name(NAME),
        display_id=mask_id(NATIONAL_ID),
        category="public_security_risk",
        measures=["flight_ban", "rail_ban"],
        legal_basis="Luoshan County PSB decision on key-person risk marking (2016) no. 142",
        severity="serious",
        case_ref="Luoshan PSB (2016) 142",
        details={"bureau_case": "LS-2016-142", "risk_basis": "petitioning: marked high-risk"},
        notice_served_at=now - timedelta(days=10),
        effective_from=now - timedelta(days=1),
        expires_at=now + timedelta(days=365),
    )
    return seal(listing, "", keystore.private(BUREAU))


def admission(listing: ListingIssued, keystore: Keystore, now: datetime) -> ListingRevoked:
    """The bureau admits the marking was wrong and revokes it."""
    revoked = ListingRevoked(
        envelope=_envelope(listing.envelope.listing_id, 2, now),
        expected_version=1,
        reason=RevocationReason.MISLISTING,
        note="the bureau found the marking had no basis",
    )
    return seal(revoked, listing.envelope.hash, keystore.private(BUREAU))
