"""`gateway witness serve` as a real process on a loopback port, for the tests of
witnessing (tests/integration/audit/test_audit_witnessing.py, tests/e2e)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gateway.tlog.cosignature import WitnessKey
from tests.support.processes import Process, free_port, spawn, wait_for_http


@dataclass
class WitnessServer:
    """A witness with its own key and state file in ``directory``."""

    directory: Path
    name: str
    key: WitnessKey
    port: int
    logs: list[str]
    process: Process | None = None

    @classmethod
    def create(cls, directory: Path, name: str, logs: list[str]) -> WitnessServer:
        """Makes the witness's key with `gateway witness keygen` (as an operator does)."""
        directory.mkdir(parents=True, exist_ok=True)
        made = subprocess.run(
            [
                *(sys.executable, "-m", "gateway", "witness", "keygen"),
                *("--name", name, "--key", str(directory / "witness.pem")),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        key = WitnessKey.parse(made.stdout.strip().splitlines()[-1])
        return cls(directory, name, key, free_port(), logs)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WitnessServer:
        args = [sys.executable, "-m", "gateway", "witness", "serve", "--name", self.name]
        args += ["--key", str(self.directory / "witness.pem")]
        args += ["--state", str(self.directory / "state.db"), "--port", str(self.port)]
        for log in self.logs:
            args += ["--log", log]
        self.process = spawn(args, self.directory / "witness.log")
        wait_for_http(self.url + "/healthz", self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def log(self) -> str:
        return self.process.log() if self.process else ""
