"""`accord publish import --workers N`: the import in N processes, each taking the lines of its listings.

Checking and sealing a line is CPU work (rules, keyed hash, Avro, Ed25519), so one Python
process is the limit of one import; N processes share the lines by listing (bulk.Share),
so each listing's events still come, in file order, from one idempotent producer. Each
worker is `accord publish import --share K/N` with this process's environment (secrets
stay off the command line); their reports are merged into one. A worker dies with its
parent (PR_SET_PDEATHSIG), so a killed import leaves no process sending behind it, and a
re-run, with any number of workers, waits for what the killed run may have sent.
"""

from __future__ import annotations

import ctypes
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from services.core.errors import AccordError
from services.publisher.bulk import Report, Source

PR_SET_PDEATHSIG = 1


class WorkerFailed(AccordError):
    """A worker could not run its share: its own answer (`refused`, `reason`) and exit status."""

    def __init__(self, answer: dict[str, Any], exit_code: int) -> None:
        super().__init__(str(answer.get("reason", answer)))
        self.answer, self.exit_code = answer, exit_code


def run_shards(source: Source, wait: float, workers: int) -> Report:
    """Run `workers` processes over `source` and merge their reports."""
    started = [subprocess.Popen(_command(source, wait, k, workers), stdout=subprocess.PIPE,
                                preexec_fn=_die_with_parent) for k in range(workers)]  # fmt: skip
    parts = []
    for index, process in enumerate(started):
        out, _ = process.communicate()
        answer = answer_of(out, f"worker {index} exited {process.returncode} without a report")
        if "import_id" not in answer:  # not a report: the refusal that stopped the worker
            raise WorkerFailed(answer, process.returncode or 1)  # the others die with this process
        parts.append(report_of(answer))
    return Report.merged(source.import_id, parts)


def answer_of(out: bytes, otherwise: str) -> dict[str, Any]:
    """The JSON document a worker printed (its report, or its refusal); else a refusal saying `otherwise`."""
    try:
        answer = json.loads(out)
    except ValueError:
        answer = None
    return answer if isinstance(answer, dict) else {"refused": "error", "reason": otherwise}


def _command(source: Source, wait: float, index: int, of: int) -> list[str]:
    entry = "from services.cli import main; main()"
    return [sys.executable, "-c", entry, "publish", "import", str(Path(source.path).resolve()),
            "--format", source.fmt, "--import-id", source.import_id, "--wait", str(wait),
            "--share", f"{index}/{of}"]  # fmt: skip


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def report_of(answer: dict[str, Any]) -> Report:
    return Report(
        import_id=answer["import_id"], lines=answer["lines"], published=answer["published"],
        admitted=answer["admitted"], already=answer["already_published"], refused=answer["refusals"],
        undecided=answer["undecided_lines"], publish_s=answer["publish_s"], verdicts_s=answer["verdicts_s"],
        publish_cpu_s=answer.get("publish_cpu_s", 0.0),
    )  # fmt: skip
