"""Sealed (hashed and signed) listing events for tests, built like the publisher builds them.

`Ledgerbook` keeps each listing's last version and hash so a test writes a valid
chain with one call per event, and can still forge or break one on purpose.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TypeVar

from services.core.crypto import Keystore, TrustAnchor
from services.core.events import (
    Envelope,
    Event,
    Exemption,
    ExemptionGranted,
    ListingCorrected,
    ListingExpired,
    ListingIssued,
    ListingRevoked,
    ObjectionFiled,
    ObjectionResolved,
    RevocationReason,
)
from services.core.policy import Policy, load_policy
from services.core.sealing import seal
from services.core.topics import BACKBONE

T0 = datetime(2026, 1, 1, tzinfo=UTC)
E = TypeVar("E", bound=Event)  # each builder returns its own event type, as `seal` does


@cache
def _catalogue_fields(category: str) -> list[str]:
    return load_policy().category_by_code[category].fields


def lawful_details(category: str, listing_id: str) -> dict[str, str]:
    """Details that the catalogue allows for `category`, so the ledger's content rules accept them."""
    fields = _catalogue_fields(category)
    return {name: f"({listing_id})" for name in fields[:2]}


def policy_with_keys(folder: Path) -> tuple[Policy, Keystore]:
    """The repository's policy with a fresh keystore's public keys registered."""
    policy = load_policy()
    keystore = Keystore(folder)
    keys = keystore.create([a.id for a in policy.agencies])
    return policy.with_public_keys(keys), keystore


def trust_env(keystore: Keystore, policy: Policy) -> dict[str, str]:
    """What a backbone process needs to believe `keystore`'s agencies: a trust anchor kept apart
    from the keys (beside the keystore's folder), and the backbone's own key."""
    anchor = TrustAnchor(keystore.folder.parent / f"{keystore.folder.name}-trust" / "public_keys.yaml")
    anchor.register({a.id: a.public_key for a in policy.agencies})
    return {
        "ACCORD_TRUST_ANCHOR": str(anchor.path),
        "ACCORD_BACKBONE_KEY_FILE": str(keystore.key_file(BACKBONE)),
    }


@dataclass
class Ledgerbook:
    """Builds valid event chains per listing; `now` is the decision time of the next event."""

    keystore: Keystore
    now: datetime = T0
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)

    def envelope(self, listing_id: str, agency: str) -> Envelope:
        version, _ = self.heads.get(listing_id, (0, ""))
        return Envelope(
            event_id=str(uuid.uuid4()),
            listing_id=listing_id,
            version=version + 1,
            agency=agency,
            occurred_at=self.now,
            recorded_at=self.now,
        )

    def sealed(self, event: E) -> E:
        env = event.envelope
        _, prev = self.heads.get(env.listing_id, (0, ""))
        done = seal(event, prev, self.keystore.private(env.agency))
        self.heads[env.listing_id] = (env.version, done.envelope.hash)
        return done

    def version(self, listing_id: str) -> int:
        return self.heads.get(listing_id, (0, ""))[0]

    def issue(
        self,
        listing_id: str,
        agency: str = "court",
        measures: tuple[str, ...] = ("flight_ban", "rail_ban"),
        subject_ref: str = "s-subject",
        days: int = 365,
        category: str = "judgment_default",
        severity: str = "serious",
        expires_at: datetime | None = None,
    ) -> ListingIssued:
        return self.sealed(
            ListingIssued(
                envelope=self.envelope(listing_id, agency),
                subject_ref=subject_ref,
                subject_kind="person",
                display_name="Y* H**",
                display_id="420***********12",
                category=category,
                measures=list(measures),
                legal_basis="SPC Provisions (2015) art. 3",
                severity=severity,
                case_ref=f"case-{listing_id}",
                details=lawful_details(category, listing_id),
                notice_served_at=self.now - timedelta(days=10),
                effective_from=self.now,
                expires_at=expires_at or self.now + timedelta(days=days),
            )
        )

    def correct(self, listing_id: str, agency: str = "court", **changes: object) -> ListingCorrected:
        return self.sealed(
            ListingCorrected(
                envelope=self.envelope(listing_id, agency),
                expected_version=self.version(listing_id),
                reason="correction",
                **changes,  # type: ignore[arg-type]
            )
        )

    def revoke(self, listing_id: str, agency: str = "court", reason: str = "mislisting") -> ListingRevoked:
        return self.sealed(
            ListingRevoked(
                envelope=self.envelope(listing_id, agency),
                expected_version=self.version(listing_id),
                reason=RevocationReason(reason),
                note="revoked in a test",
            )
        )

    def expire(self, listing_id: str) -> ListingExpired:
        """The backbone's expiry, as the ledger seals it when a listing's time is up."""
        expired = ListingExpired(envelope=self.envelope(listing_id, "backbone"), expired_at=self.now)
        return self.sealed(expired)

    def exempt(self, listing_id: str, measure: str, days: int = 3, agency: str = "court") -> ExemptionGranted:
        return self.sealed(
            ExemptionGranted(
                envelope=self.envelope(listing_id, agency),
                expected_version=self.version(listing_id),
                exemption=Exemption(
                    exemption_id=str(uuid.uuid4()),
                    measure=measure,
                    starts_at=self.now,
                    ends_at=self.now + timedelta(days=days),
                    reason="medical travel",
                ),
            )
        )

    def object(self, listing_id: str, objection_id: str = "obj-1", agency: str = "court") -> ObjectionFiled:
        return self.sealed(
            ObjectionFiled(
                envelope=self.envelope(listing_id, agency),
                expected_version=self.version(listing_id),
                objection_id=objection_id,
                kind="objection",
                grounds="not me",
                due_at=self.now + timedelta(days=15),
            )
        )

    def resolve(
        self, listing_id: str, objection_id: str = "obj-1", agency: str = "court", outcome: str = "dismissed"
    ) -> ObjectionResolved:
        return self.sealed(
            ObjectionResolved(
                envelope=self.envelope(listing_id, agency),
                expected_version=self.version(listing_id),
                objection_id=objection_id,
                outcome=outcome,  # type: ignore[arg-type]
                required_action="none" if outcome == "dismissed" else "revoke",
                note="resolved in a test",
            )
        )
