"""Faults injected into a real audit database, for tests of what a failed commit does."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Engine


def sabotage_commits(engine: Engine) -> None:
    """Makes every later COMMIT that appended audit entries fail: a trigger leaves a
    dangling row behind a deferred foreign key, which the database checks at COMMIT."""
    statements = [
        "CREATE TABLE sabotage_parent (id INTEGER PRIMARY KEY)",
        "CREATE TABLE sabotage (parent INTEGER REFERENCES sabotage_parent (id)"
        " DEFERRABLE INITIALLY DEFERRED)",
    ]
    if engine.dialect.name == "sqlite":
        statements.append(
            "CREATE TRIGGER sabotage AFTER INSERT ON audit_entries"
            " BEGIN INSERT INTO sabotage (parent) VALUES (1); END"
        )
    else:
        statements += [
            "CREATE FUNCTION sabotage() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN INSERT INTO sabotage (parent) VALUES (1); RETURN NULL; END $$",
            "CREATE TRIGGER sabotage AFTER INSERT ON audit_entries"
            " FOR EACH STATEMENT EXECUTE FUNCTION sabotage()",
        ]
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def repair_commits(engine: Engine) -> None:
    """Undoes `sabotage_commits`; checks that no sabotaged commit left a row behind."""
    on = "" if engine.dialect.name == "sqlite" else " ON audit_entries"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TRIGGER sabotage{on}")
        assert conn.execute(sa.text("SELECT count(*) FROM sabotage")).scalar() == 0


def kill_connections_at_commit(engine: Engine) -> None:
    """PostgreSQL: a COMMIT that appended audit entries kills its own connection, as a
    server crash or failover at that moment would: the client cannot know the outcome."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION die_at_commit() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$"
        )
        conn.exec_driver_sql(
            "CREATE CONSTRAINT TRIGGER die_at_commit AFTER INSERT ON audit_entries"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION die_at_commit()"
        )


def stop_killing_connections(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER die_at_commit ON audit_entries")
