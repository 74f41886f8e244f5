"""A fresh PostgreSQL database with the owner and app roles of
deploy/postgres/roles.sql (unique names per use), dropped with its roles afterwards."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.waiting import eventually

# As in tests/conftest.py: the role that creates the test databases (CREATEROLE, too).
PG_ADMIN_URL = os.environ.get(
    "GATEWAY_TEST_PG_URL",
    "postgresql+psycopg://gateway_test:gateway_test@127.0.0.1:5432/gateway_test",
)
ROLES_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "roles.sql"


@dataclass(frozen=True)
class RoleDatabase:
    admin_url: str  # the administrator who ran the script, on this database
    owner_url: str  # migrations, `gateway audit erase | rotate-key`
    app_url: str  # `gateway serve`, `gateway worker`
    owner: str
    app: str

    def apply_roles_script(self) -> None:
        """Runs deploy/postgres/roles.sql through psql as the administrator."""
        libpq = sa.make_url(self.admin_url).set(drivername="postgresql")
        done = subprocess.run(
            [
                "psql",
                libpq.render_as_string(hide_password=False),
                "-q",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                *("-v", f"owner_role={self.owner}", "-v", f"owner_password={self.owner}-pw"),
                *("-v", f"app_role={self.app}", "-v", f"app_password={self.app}-pw"),
                "-f",
                str(ROLES_SQL),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )
        assert done.returncode == 0, f"roles.sql failed: {done.stderr}"


@contextmanager
def role_database(admin_url: str) -> Iterator[RoleDatabase]:
    """A new database on ``admin_url``'s server with the script applied once (before
    any migration, as an operator would); the caller migrates as the owner."""
    if shutil.which("psql") is None:
        # Installed with PostgreSQL by `make test-setup` (scripts/ensure-postgres.sh).
        pytest.fail("psql (the PostgreSQL client) is not installed: run `make test-setup`")
    token = secrets.token_hex(5)
    name, owner, app = f"gw_roles_{token}", f"gw_owner_{token}", f"gw_app_{token}"
    admin = sa.create_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    base = sa.make_url(admin_url).set(database=name)
    roles = RoleDatabase(
        admin_url=base.render_as_string(hide_password=False),
        owner_url=base.set(username=owner, password=f"{owner}-pw").render_as_string(
            hide_password=False
        ),
        app_url=base.set(username=app, password=f"{app}-pw").render_as_string(hide_password=False),
        owner=owner,
        app=app,
    )
    try:
        roles.apply_roles_script()
        yield roles
    finally:
        with admin.connect() as conn:

            def dropped() -> bool:
                try:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except sa.exc.ProgrammingError:  # an autovacuum worker: gone in moments
                    return False
                return True

            eventually(dropped, f"DROP DATABASE {name} (still in use)")
            # The database held everything they owned or were granted.
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{app}"')
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{owner}"')
        admin.dispose()
