"""The bulk path's bookkeeping, no broker: which process takes a line, the journal, the merged report."""

from __future__ import annotations

import json
from pathlib import Path

from services.core.errors import RuleViolation
from services.publisher.bulk import Journal, Report, Share
from services.publisher.shards import answer_of, report_of

LISTINGS = [f"listing-{n}" for n in range(300)]


def test_every_listing_goes_to_exactly_one_share_and_a_line_without_one_to_the_first() -> None:
    shares = [Share(k, 3) for k in range(3)]
    for listing in LISTINGS:
        assert sum(share.takes(listing) for share in shares) == 1
    assert all(any(share.takes(listing) for listing in LISTINGS) for share in shares)
    assert [share.takes(None) for share in shares] == [True, False, False]
    assert all(Share().takes(listing) for listing in LISTINGS)


def test_the_journal_mark_is_the_furthest_any_share_of_the_import_may_have_sent(tmp_path: Path) -> None:
    first, second = Journal(tmp_path, "court-imp", Share(0, 2)), Journal(tmp_path, "court-imp", Share(1, 2))
    other = Journal(tmp_path, "court-another", Share())
    assert first.mark() == 0
    first.advance(1000)
    second.advance(3000)
    other.advance(9000)
    alone = Journal(tmp_path, "court-imp", Share())  # a re-run in one process sees both shares' marks
    assert alone.mark() == 3000 and first.mark() == 3000
    alone.clear()  # the one share of the re-run: what the wider run's other share left goes too
    assert alone.mark() == 0 and other.mark() == 9000


def test_a_journal_only_some_shares_are_done_with_keeps_the_others_marks(tmp_path: Path) -> None:
    shares = [Journal(tmp_path, "court-imp", Share(k, 2)) for k in range(2)]
    for journal in shares:
        journal.advance(500)
    shares[0].clear()
    assert shares[1].mark() == 500


def test_a_merged_report_adds_the_parts_and_its_exit_code_says_the_worst() -> None:
    one, two = (
        Report("imp", lines=3, published=2, admitted=2, publish_s=1.0),
        Report("imp", lines=2, already=2),
    )
    two.refuse(7, RuleViolation("minor_subject", "a minor"), "L7")
    merged = Report.merged("imp", [one, two])
    assert (merged.lines, merged.published, merged.admitted, merged.already) == (5, 2, 2, 2)
    assert merged.refused == [{"line": 7, "code": "minor_subject", "reason": "a minor", "listing_id": "L7"}]
    assert merged.exit_code() == 3 and one.exit_code() == 0
    one.undecided.append({"line": 1})
    assert one.exit_code() == 8
    assert merged.document()["refusals"][0]["line"] == 7 and merged.document()["publish_s"] == 1.0


def test_a_journal_edited_into_nonsense_counts_as_none(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "court-imp", Share())
    for nonsense in ("[]", "{", '{"sent_through": "many"}', "{}"):
        journal.path.write_text(nonsense)
        assert journal.mark() == 0


def test_a_workers_printed_report_reads_back_whole_and_anything_else_is_its_failure() -> None:
    report = Report("imp", lines=4, published=3, admitted=2, already=1, publish_s=1.5, verdicts_s=0.5)
    report.refuse(2, RuleViolation("minor_subject", "a minor"), None)
    report.undecided.append({"line": 4, "listing_id": "L4", "event_id": "e4", "why": "not yet"})
    assert report_of(json.loads(json.dumps(report.document()))).document() == report.document()
    assert answer_of(b"Traceback (most recent call last):", "worker 1 died")["reason"] == "worker 1 died"
    assert answer_of(b"[]", "worker 1 died")["refused"] == "error"
