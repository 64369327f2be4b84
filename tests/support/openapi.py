"""What every Accord HTTP server's OpenAPI document must say about its security."""

from __future__ import annotations

from typing import Any

from services.core.httpauth import SCHEME


def assert_every_route_is_protected(document: dict[str, Any], open_paths: set[str]) -> None:
    """The bearer scheme is declared, and named (with 401 and 403 bodies) on every route but `open_paths`."""
    scheme = document["components"]["securitySchemes"][SCHEME]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    refused = document["components"]["schemas"]["Refused"]["properties"]
    assert set(refused) == {"code", "reason"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            protected = path not in open_paths
            assert (operation.get("security") == [{SCHEME: []}]) == protected, (method, path)
            if protected:
                for status in ("401", "403"):
                    body = operation["responses"][status]["content"]["application/json"]["schema"]
                    assert body == {"$ref": "#/components/schemas/Refused"}, (method, path, status)
