"""Shared fixtures: real SQLite, PostgreSQL and Meilisearch. With CI=true a missing service fails."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from portal.settings import Settings
from portal.system import System, build_system

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("PORTAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def unavailable(what: str, why: str) -> None:
    message = f"{what} is not available: {why}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_url() -> str:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as e:
        unavailable("PostgreSQL", f"{PG_URL}: {e}")
    return PG_URL


@pytest.fixture(scope="session")
def meili(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A throwaway Meilisearch on a free port (or PORTAL_TEST_MEILI_URL/KEY)."""
    url = os.environ.get("PORTAL_TEST_MEILI_URL")
    if url:
        yield url, os.environ.get("PORTAL_TEST_MEILI_KEY", "")
        return
    from search.server import ManagedMeili, MeiliUnavailable

    server = ManagedMeili(tmp_path_factory.mktemp("meili"))
    try:
        server.start()
    except MeiliUnavailable as e:
        unavailable("Meilisearch", str(e))
    yield server.url, server.master_key
    server.stop()


def drop_schema(url: str, *schemas: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _postgres(settings: Settings, url: str) -> Iterator[Settings]:
    """`settings` on a fresh PostgreSQL schema, dropped afterwards (with its keys' schema)."""
    schema = "t_" + uuid.uuid4().hex[:12]
    yield settings.with_(postgres_url=url, postgres_schema=schema)
    drop_schema(url, schema, schema + "_keys")


@pytest.fixture(params=["sqlite", "postgres"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """The same test on both stores: SQLite files, and a fresh PostgreSQL schema."""
    settings = Settings(var_dir=tmp_path / "var", secret_key="test-secret")
    if request.param == "postgres":
        yield from _postgres(settings, request.getfixturevalue("pg_url"))
    else:
        yield settings


@pytest.fixture
def pg_settings(pg_url: str, tmp_path: Path) -> Iterator[Settings]:
    """A PostgreSQL-only test's settings: a fresh schema, files under tmp_path."""
    yield from _postgres(Settings(var_dir=tmp_path / "var", secret_key="test-secret"), pg_url)


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var", secret_key="test-secret")


@pytest.fixture
def make_system() -> Iterator:
    built: list[System] = []

    def make(settings: Settings) -> System:
        system = build_system(settings)
        built.append(system)
        return system

    yield make
    for s in built:
        s.close()


@pytest.fixture
def meili_index(meili: tuple[str, str]) -> Iterator[dict[str, str]]:
    """A unique index name on the shared Meilisearch, deleted afterwards."""
    import meilisearch

    url, key = meili
    name = "t_" + uuid.uuid4().hex[:10]
    yield {"meili_url": url, "meili_key": key, "meili_index": name}
    client = meilisearch.Client(url, key)
    with contextlib.suppress(Exception):  # the test may have deleted or never created it
        client.wait_for_task(client.delete_index(name).task_uid)
