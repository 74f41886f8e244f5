"""deploy/postgres/roles.sql on a real PostgreSQL: the owner migrates and administers;
the app role (what `gateway serve` runs as) starts on the migrated database, appends
and checkpoints through the real audit log, and is refused every rewrite of the
audit tables: UPDATE, DELETE, TRUNCATE, and disabling their triggers. The log still
verifies afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from gateway.audit import AuditLog, AuditRecord, Checkpointer, load_signing_keys
from gateway.audit.erasure import erase_payload
from gateway.audit.export import database_source
from gateway.cli import main
from gateway.errors import ConfigError
from gateway.store import create_engine, metadata, migrate
from gateway.tlog.verifier import verify_log
from tests.support.pg_roles import PG_ADMIN_URL, RoleDatabase, role_database

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

ORIGIN = "test.example/roles"
AUDIT_TABLES = sorted(t for t in metadata.tables if t.startswith("audit_"))
OPERATIONAL_TABLES = sorted(t for t in metadata.tables if not t.startswith("audit_"))
REWRITES = [
    "UPDATE {table} SET {column} = {column}",
    "DELETE FROM {table}",
    "TRUNCATE {table}",
    "ALTER TABLE {table} DISABLE TRIGGER USER",
    "DROP TABLE {table}",
]


@pytest.fixture
def roles() -> Iterator[RoleDatabase]:
    with role_database(PG_ADMIN_URL) as roles:
        yield roles


@pytest.fixture
def owner(roles: RoleDatabase) -> Iterator[Engine]:
    engine = create_engine(roles.owner_url)
    yield engine
    engine.dispose()


@pytest.fixture
def app(roles: RoleDatabase) -> Iterator[Engine]:
    engine = create_engine(roles.app_url)
    yield engine
    engine.dispose()


def _sqlstate(engine: Engine, statement: str) -> str | None:
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(statement)
    except sa.exc.DBAPIError as exc:
        return getattr(exc.orig, "sqlstate", None)
    return None


async def _append_and_checkpoint(engine: Engine, key_file: Path, start: int) -> None:
    log = AuditLog(engine, ORIGIN)
    await log.start()
    checkpointer = Checkpointer(
        engine, ORIGIN, load_signing_keys(key_file, ORIGIN), every_entries=10**6, every_seconds=3600
    )
    await checkpointer.start()
    try:
        ref = f"req{start}"
        await log.append(
            AuditRecord("call.attempt", ref, {"request_id": ref, "subject": "a"}, subject="a"),
            AuditRecord("call.decision", ref, {"request_id": ref, "decision": {"allow": True}}),
            AuditRecord("call.outcome", ref, {"request_id": ref}),
        )
        await checkpointer.checkpoint_now()
    finally:
        await log.close()
        await checkpointer.close()


def _config(tmp_path: Path, url: str) -> str:
    config = tmp_path / f"{sa.make_url(url).username}.yaml"
    config.write_text(
        f"storage:\n  url: '{url}'\naudit:\n  origin: '{ORIGIN}'\n"
        "identity:\n  issuers:\n"
        "    - {issuer: 'https://idp.example', jwks_url: 'https://idp.example/jwks'}\n"
    )
    return str(config)


async def test_app_role_appends_but_cannot_rewrite(
    roles: RoleDatabase,
    owner: Engine,
    app: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Before the owner migrated: a clear error, not a half-made schema.
    with pytest.raises(ConfigError, match=r"may not migrate the schema.*gateway db migrate"):
        migrate(app)
    assert main(["db", "migrate", "--config", _config(tmp_path, roles.app_url)]) == 1
    assert "run `gateway db migrate` with the owner" in capsys.readouterr().err

    assert main(["db", "migrate", "--config", _config(tmp_path, roles.owner_url)]) == 0
    roles.apply_roles_script()  # after every migration: grants on the new tables
    migrate(app)  # what `gateway serve` does at start: at head, no DDL

    key_file = tmp_path / "keys" / "audit-signing.pem"
    await _append_and_checkpoint(app, key_file, 0)
    await _append_and_checkpoint(app, key_file, 3)

    for table in AUDIT_TABLES:
        column = next(iter(metadata.tables[table].columns)).name
        for template in REWRITES:
            statement = template.format(table=table, column=column)
            assert _sqlstate(app, statement) == "42501", statement  # permission denied
    # Operational tables: what the gateway changes in place, but not their shape.
    for table in OPERATIONAL_TABLES:
        column = next(iter(metadata.tables[table].columns)).name
        assert _sqlstate(app, f"UPDATE {table} SET {column} = {column}") is None, table
        assert _sqlstate(app, f"DELETE FROM {table} WHERE false") is None, table
        assert _sqlstate(app, f"ALTER TABLE {table} DISABLE TRIGGER USER") == "42501", table
    assert _sqlstate(app, "UPDATE alembic_version SET version_num = version_num") == "42501"
    assert _sqlstate(app, "CREATE TABLE smuggled (x int)") == "42501"

    # Erasure is the owner's: the app role cannot delete a payload.
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        erase_payload(app, ORIGIN, 0, "DSR-1")
    assert erase_payload(owner, ORIGIN, 0, "DSR-1").erasure_seq == 6
    # The owner still cannot rewrite: the triggers stop it.
    assert _sqlstate(owner, "DELETE FROM audit_entries") is not None

    report = verify_log(database_source(app))
    assert report.ok, report.faults
    assert (report.size, report.checkpoints) == (7, 2)


def test_default_privileges_cover_a_later_table(
    roles: RoleDatabase, owner: Engine, app: Engine
) -> None:
    # A table a later migration adds, before the script runs again: only SELECT and
    # INSERT for the app role (enough for an audit table, never too much).
    migrate(owner)
    with owner.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE audit_future (x int)")
    assert _sqlstate(app, "INSERT INTO audit_future VALUES (1)") is None
    assert _sqlstate(app, "SELECT x FROM audit_future") is None
    for statement in ("UPDATE audit_future SET x = 2", "DELETE FROM audit_future"):
        assert _sqlstate(app, statement) == "42501", statement
