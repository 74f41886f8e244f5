"""Fixtures shared across test folders."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine

from gateway.store import create_engine, migrate
from tests.support.waiting import eventually

# Property tests never time an example (the machine may be busy), and in CI they run
# the same examples every time (derandomized), so that a red run can be reproduced.
settings.register_profile(
    "local", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.register_profile("ci", settings.get_profile("local"), derandomize=True, database=None)
settings.load_profile("ci" if os.environ.get("CI") else "local")


@pytest.fixture
def anyio_backend() -> str:
    # The gateway runs on asyncio (uvicorn); the audit sequencer wakes callers
    # through asyncio's loop.
    return "asyncio"


# --- database ------------------------------------------------------------------------
# Integration tests run against both SQLite (a file in tmp_path) and the real
# PostgreSQL that `make test-setup` provides. Each test module gets its own PostgreSQL
# database, created through the gateway_test role and dropped afterwards; each test
# starts from an empty, migrated schema.

PG_ADMIN_URL = os.environ.get(
    "GATEWAY_TEST_PG_URL",
    "postgresql+psycopg://gateway_test:gateway_test@127.0.0.1:5432/gateway_test",
)


@pytest.fixture(scope="module")
def pg_database_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test module."""
    admin = create_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    name = f"gw_test_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc.orig}); run "
            "`make test-setup` (scripts/ensure-postgres.sh) or set GATEWAY_TEST_PG_URL"
        )
    try:
        yield sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_database(admin, name)
        admin.dispose()


def _drop_database(admin: sa.Engine, name: str) -> None:
    # FORCE ends our own leftover sessions, but not an autovacuum worker busy on the
    # database (not ours to signal): that one finishes within moments, so try again.
    def dropped() -> bool:
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except sa.exc.ProgrammingError:
            return False
        return True

    eventually(dropped, f"DROP DATABASE {name} (still in use)")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty database URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'gateway.db'}"
    url: str = request.getfixturevalue("pg_database_url")
    reset = create_engine(url)
    with reset.begin() as conn:
        # Dropping the schema is the only way to empty tables whose triggers refuse
        # DELETE and TRUNCATE.
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    reset.dispose()
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated engine on the parametrized database."""
    engine = create_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()
