"""`accord reconcile run` refuses a malformed --copy or --http before touching the broker, saying what
it wants."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from services.reconciler.cli import reconcile


@pytest.mark.parametrize(
    ("given", "says"),
    [("civil-aviation", "AGENCY=URL"), ("luoshan-police=sqlite:///x.db", "enforces nothing")],
)
def test_a_copy_option_must_name_an_enforcing_agency_and_a_url(given: str, says: str) -> None:
    result = CliRunner().invoke(reconcile, ["run", "--copy", given])
    assert result.exit_code == 2 and says in result.output


@pytest.mark.parametrize("given", ["8095", "localhost:http", "127.0.0.1:"])
def test_the_operator_page_address_must_be_host_and_port(given: str) -> None:
    result = CliRunner().invoke(reconcile, ["run", "--http", given])
    assert result.exit_code == 2 and "HOST:PORT" in result.output
