"""The one `Rejected` builder: ids depend on who refused and where, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime

from services.core.position import Position
from services.core.rejections import rejected

WHERE = Position("views.caac", 2, 41)
AT = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def test_re_reading_the_same_position_gives_the_same_record() -> None:
    first = rejected("caac", WHERE, "not_entitled", "a field it may not see", b"\x01", AT)
    later = rejected("caac", Position(*WHERE), "not_entitled", "a field it may not see", b"\x01", AT)
    assert first == later


def test_two_refusers_of_one_message_and_two_positions_get_different_ids() -> None:
    ids = {
        rejected("caac", WHERE, "c", "r", b"", AT).envelope.event_id,
        rejected("reconciler", WHERE, "c", "r", b"", AT).envelope.event_id,
        rejected("caac", WHERE._replace(offset=42), "c", "r", b"", AT).envelope.event_id,
    }
    assert len(ids) == 3


def test_the_record_names_the_refuser_the_position_and_keeps_the_payload() -> None:
    record = rejected("ledger", WHERE, "bad_hash", "altered", None, AT, "L-1", 3)
    assert record.envelope.agency == "ledger"
    assert (record.source_topic, record.partition, record.offset) == WHERE
    assert (record.envelope.listing_id, record.envelope.version) == ("L-1", 3)
    assert record.payload == b""
