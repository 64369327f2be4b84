"""How the reconciler reaches a copy: through its HTTP server, or its database, and at what cost.

`open_probe` takes the copy's address: `http(s)://` is the copy's own server (`accord
copy serve`, the way for copies on other agencies' hosts), anything else is a store URL
opened directly (`StoreProbe`, for copies on this host and for tests). `MeteredProbe`
counts the bytes each answer takes on the wire, so the reconciler can report what
narrowing a mismatch cost against the copy's size.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any, TypeVar

from services.core.copystore import StoreError
from services.core.copystore.probe import CopyProbe, Damage, Leaf, StoreProbe

T = TypeVar("T")
HTTP_PREFIXES = ("http://", "https://")


def open_probe(url: str, agency: str, timeout_s: float = 10.0, token: str = "") -> HttpProbe | StoreProbe:
    """The probe for a copy at `url`: its HTTP server (shown the reconciler's `token`), or its database."""
    if url.startswith(HTTP_PREFIXES):
        return HttpProbe(url, agency, timeout_s, token)
    return StoreProbe.open(url, agency)


class HttpProbe:
    """Asks a copy's server (`/probe/...` of `accord copy serve`) the `CopyProbe` questions.

    Each request carries the reconciler's bearer token (`ACCORD_HTTP_TOKEN`): a copy
    answers its probe to the reconciler alone.
    """

    def __init__(self, base_url: str, agency: str, timeout_s: float = 10.0, token: str = "") -> None:
        self.base_url, self.agency, self.timeout_s = base_url.rstrip("/"), agency, timeout_s
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def digest(self) -> list[str]:
        return list(self._get("digest"))

    def sub_digest(self, bucket: int, size: int, fanout: int) -> list[str]:
        return list(self._get("sub-digest", bucket=bucket, size=size, fanout=fanout))

    def leaves(self, bucket: int, size: int) -> dict[str, Leaf]:
        return {lid: Leaf(*answer) for lid, answer in self._get("leaves", bucket=bucket, size=size).items()}

    def positions(self) -> dict[int, int]:
        return {int(p): int(offset) for p, offset in self._get("positions").items()}

    def misplaced(self) -> dict[str, Leaf]:
        return {lid: Leaf(*answer) for lid, answer in self._get("misplaced").items()}

    def damaged(self) -> dict[str, Damage]:
        found = self._get("damaged").items()
        return {lid: Damage(reason, datetime.fromisoformat(seen)) for lid, (reason, seen) in found}

    def close(self) -> None:
        """Nothing to release: each question is one short request."""

    def _get(self, question: str, **params: int) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.base_url}/probe/{question}{query}"
        request = urllib.request.Request(url, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.load(response)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise StoreError(f"{self.agency}'s copy at {url} did not answer: {e}") from e


def wire_size(answer: object) -> int:
    """Bytes of `answer` as compact JSON: what an HTTP probe would send."""
    return len(json.dumps(answer, separators=(",", ":"), default=str))


class MeteredProbe:
    """A probe that adds up the bytes of every answer it relays."""

    def __init__(self, probe: CopyProbe) -> None:
        self.probe = probe
        self.bytes = 0

    def digest(self) -> list[str]:
        return self._count(self.probe.digest())

    def sub_digest(self, bucket: int, size: int, fanout: int) -> list[str]:
        return self._count(self.probe.sub_digest(bucket, size, fanout))

    def leaves(self, bucket: int, size: int) -> dict[str, Leaf]:
        return self._count(self.probe.leaves(bucket, size))

    def positions(self) -> dict[int, int]:
        return self._count(self.probe.positions())

    def misplaced(self) -> dict[str, Leaf]:
        return self._count(self.probe.misplaced())

    def damaged(self) -> dict[str, Damage]:
        return self._count(self.probe.damaged())

    def _count(self, answer: T) -> T:
        self.bytes += wire_size(answer)
        return answer
