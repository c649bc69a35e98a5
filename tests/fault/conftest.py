"""Fault tests: real worker processes on loopback against PostgreSQL (and Meilisearch)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import unavailable


@pytest.fixture
def own_meili_binary() -> None:
    """The Meilisearch outage test kills its own server: it needs a binary, not an external URL."""
    if os.environ.get("PORTAL_TEST_MEILI_URL"):
        pytest.skip("the outage test needs a Meilisearch binary it may kill, not an external one")
    from search.server import MeiliUnavailable, provision

    try:
        provision()
    except MeiliUnavailable as e:
        unavailable("Meilisearch", str(e))


@pytest.fixture
def private_postgres_binaries() -> None:
    from tests.fault.harness import PrivatePostgres

    reason = PrivatePostgres.available()
    if reason:
        unavailable("A private PostgreSQL (initdb, pg_ctl)", reason)
