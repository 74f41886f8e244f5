"""`gateway db migrate`: brings the configured database to the newest schema.

`gateway serve` and `gateway worker` migrate at start as well; this command is for a
deployment where they run as a role that may not change the schema (PostgreSQL,
deploy/postgres/roles.sql): the operator migrates with the owner role's storage URL.
"""

from __future__ import annotations

import argparse

from gateway.cli.common import add_config_option, config_from


def register(commands: argparse._SubParsersAction) -> None:
    db = commands.add_parser("db", help="database administration")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    migrate = db_commands.add_parser("migrate", help="upgrade the schema to the newest revision")
    add_config_option(migrate)
    migrate.set_defaults(handler=cmd_db_migrate)


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from gateway.store import create_engine, migrate

    config = config_from(args)
    engine = create_engine(config.storage.url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    print(f"database {engine.url.render_as_string(hide_password=True)} is at the newest schema")
    return 0
