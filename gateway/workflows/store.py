"""Published workflow versions, channels and their history, in SQL.

Versions are inserted once and never updated (an UPDATE trigger refuses it, migration
0008). Two publishers of the same NAME@VERSION race on the unique key: the loser reads
the winner's row and is told whether it is the same content (idempotent) or not
(conflict). A channel is one row per (workflow, channel), replaced by each promotion
together with a history row, in one transaction.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from gateway.store import dialect_of
from gateway.store.tables import workflow_channel_history, workflow_channels, workflow_versions
from gateway.timestamps import utc_now
from gateway.workflows.errors import WorkflowNotFound, WorkflowVersionConflict
from gateway.workflows.manifest import Manifest, parse_manifest


@dataclass(frozen=True)
class Published:
    id: str
    name: str
    version: str
    content_hash: str
    manifest: Manifest
    published_by: str
    published_at: str

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "hash": self.content_hash,
            "description": self.manifest.description,
            "published_by": self.published_by,
            "published_at": self.published_at,
        }


def _published(row: Any) -> Published:
    return Published(
        id=row.id,
        name=row.name,
        version=row.version,
        content_hash=row.content_hash,
        manifest=parse_manifest(row.document),
        published_by=row.published_by,
        published_at=row.published_at,
    )


class WorkflowStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = dialect_of(engine)

    # --- versions ------------------------------------------------------------------

    def find(self, name: str, version: str) -> Published | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(workflow_versions).where(
                    workflow_versions.c.name == name, workflow_versions.c.version == version
                )
            ).first()
        return _published(row) if row else None

    def get(self, name: str, version: str) -> Published:
        found = self.find(name, version)
        if found is None:
            raise WorkflowNotFound(
                f"no workflow {name}@{version}", details={"workflow": f"{name}@{version}"}
            )
        return found

    def check_new(self, manifest: Manifest) -> Published | None:
        """The stored version with this manifest's content (publishing it again changes
        nothing), or None when it is new; `WorkflowVersionConflict` when its
        NAME@VERSION holds other content."""
        existing = self.find(manifest.name, manifest.version)
        if existing is None:
            return None
        if existing.content_hash != manifest.content_hash:
            raise WorkflowVersionConflict(
                f"{manifest.ref} is already published with other content "
                f"({existing.content_hash}); publish it under a new version",
                details={"published": existing.content_hash, "yours": manifest.content_hash},
            )
        return existing

    def insert(self, manifest: Manifest, published_by: str) -> tuple[Published, bool]:
        """Stores a new version; ``(version, created)``. Losing a race to the same
        NAME@VERSION is `check_new`'s answer."""
        now = utc_now()
        try:
            with self.dialect.write_transaction(self.engine) as conn:
                conn.execute(
                    sa.insert(workflow_versions).values(
                        id=manifest.id,
                        name=manifest.name,
                        version=manifest.version,
                        content_hash=manifest.content_hash,
                        document=manifest.document(),
                        published_by=published_by,
                        published_at=now,
                    )
                )
        except sa.exc.IntegrityError:
            existing = self.check_new(manifest)
            if existing is None:
                raise
            return existing, False
        return self.get(manifest.name, manifest.version), True

    def list(self, name: str | None = None) -> list[Published]:
        query = sa.select(workflow_versions).order_by(
            workflow_versions.c.name, workflow_versions.c.published_at
        )
        if name is not None:
            query = query.where(workflow_versions.c.name == name)
        with self.engine.connect() as conn:
            return [_published(row) for row in conn.execute(query)]

    # --- channels ------------------------------------------------------------------

    def channels(self, name: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(workflow_channels).order_by(
            workflow_channels.c.name, workflow_channels.c.channel
        )
        if name is not None:
            query = query.where(workflow_channels.c.name == name)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def channel(self, name: str, channel: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(workflow_channels).where(
                    workflow_channels.c.name == name, workflow_channels.c.channel == channel
                )
            ).first()
        return dict(row._mapping) if row else None

    def history(self, name: str, channel: str | None = None) -> list[dict[str, Any]]:
        query = (
            sa.select(workflow_channel_history)
            .where(workflow_channel_history.c.name == name)
            .order_by(workflow_channel_history.c.promoted_at, workflow_channel_history.c.id)
        )
        if channel is not None:
            query = query.where(workflow_channel_history.c.channel == channel)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def point(
        self,
        published: Published,
        channel: str,
        *,
        promoted_by: str,
        approval_id: str | None,
    ) -> str | None:
        """Points ``channel`` at ``published``, recording the promotion; returns the
        version it pointed at before (None: a new channel)."""
        now = utc_now()
        with self.dialect.write_transaction(self.engine) as conn:
            row = conn.execute(
                sa.select(workflow_channels.c.version)
                .where(
                    workflow_channels.c.name == published.name,
                    workflow_channels.c.channel == channel,
                )
                .with_for_update()
            ).first()
            previous = row.version if row else None
            values = {
                "version": published.version,
                "workflow_id": published.id,
                "promoted_by": promoted_by,
                "promoted_at": now,
            }
            if row is None:
                conn.execute(
                    sa.insert(workflow_channels).values(
                        name=published.name, channel=channel, **values
                    )
                )
            else:
                conn.execute(
                    sa.update(workflow_channels)
                    .where(
                        workflow_channels.c.name == published.name,
                        workflow_channels.c.channel == channel,
                    )
                    .values(**values)
                )
            conn.execute(
                sa.insert(workflow_channel_history).values(
                    id="prm_" + secrets.token_hex(10),
                    name=published.name,
                    channel=channel,
                    previous_version=previous,
                    approval_id=approval_id,
                    **values,
                )
            )
        return previous
