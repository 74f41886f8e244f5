"""The one `MetaData` every table of the schema is on (`gateway.store.tables` names
the tables). Only the tables' modules import it; everything else imports it from
`gateway.store.tables`."""

from __future__ import annotations

from sqlalchemy import MetaData

# Deterministic constraint names on both dialects, so later migrations can name them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
