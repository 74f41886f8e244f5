"""Alembic environment: runs only on the connection `gateway.store.migrate` passes in.

There is no alembic.ini and no URL here on purpose: the gateway's config file is the
one place a database URL comes from.
"""

from __future__ import annotations

from alembic import context

from gateway.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "run migrations through gateway.store.migrate(engine); "
        "offline (--sql) mode and alembic.ini URLs are not supported"
    )

context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
