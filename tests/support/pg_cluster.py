"""A PostgreSQL cluster of a test's own, for tests that stop and start the database.

The suite's shared server on 127.0.0.1:5432 is never restarted (other runs use it):
a fault test that takes the database away `initdb`s a cluster into a temporary
folder and runs it with `pg_ctl` on a free loopback port, stopping it at teardown.
The binaries are Debian's (/usr/lib/postgresql/<version>/bin, as
scripts/ensure-postgres.sh installs them). PostgreSQL refuses to run as root: as root,
the cluster is owned by and run as the ``postgres`` user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from gateway.store import create_engine
from tests.support.processes import free_port
from tests.support.waiting import TIMEOUT_S

SUPERUSER = "gateway_owner"


def postgres_bin() -> Path:
    """The folder of the newest installed PostgreSQL's server binaries."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / "pg_ctl").exists()),
        key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()],
    )
    if not versions:
        raise RuntimeError(
            "no PostgreSQL server binaries under /usr/lib/postgresql: run "
            "scripts/ensure-postgres.sh (make test-setup)"
        )
    return versions[-1]


@dataclass
class PostgresCluster:
    """One cluster: ``start``/``stop`` it as often as a test needs; `url` names a
    database in it (trust authentication on loopback, as the superuser)."""

    directory: Path
    port: int
    bin: Path

    @classmethod
    def create(cls) -> PostgresCluster:
        """A new cluster in a folder of its own under the system's temporary folder
        (pytest's folders are private to their user, which PostgreSQL does not run
        as when the tests run as root); `destroy` removes it."""
        directory = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        cluster = cls(directory, free_port(), postgres_bin())
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres", "postgres")
        cluster._run(
            "initdb",
            "-D",
            str(cluster.data),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        return cluster

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            str(int(TIMEOUT_S)),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stops the server; ``immediate`` is a crash (recovery at the next start)."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(int(TIMEOUT_S)), "stop"
        )

    def destroy(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def running(self) -> bool:
        status = subprocess.run(
            self._command("pg_ctl", "-D", str(self.data), "status"), capture_output=True
        )
        return status.returncode == 0

    def create_database(self, name: str) -> str:
        admin = create_engine(self.url()).execution_options(isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            admin.dispose()
        return self.url(name)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bin / tool), *args]
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            self._command(tool, *args), capture_output=True, text=True, timeout=TIMEOUT_S * 2
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n"
                f"{done.stderr}\n{self.log()}"
            )


def rows(url: str, sql: str) -> list[sa.Row]:
    """The rows of one query on ``url`` (a fresh engine, disposed)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)).all())
    finally:
        engine.dispose()
