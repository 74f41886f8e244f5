"""A real OPA server for tests: the binary `make test-setup` installs, on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.processes import Process, free_port, spawn, wait_for_http


def opa_binary() -> str:
    """The pinned OPA binary; fails with the command that installs it."""
    path = os.environ.get("GATEWAY_OPA") or shutil.which("opa")
    if not path or not Path(path).exists():
        raise RuntimeError("OPA is not installed: run `make test-setup` (or set GATEWAY_OPA)")
    return path


@dataclass
class OpaServer:
    """`opa run --server` serving policy folders (and data files) on a free port."""

    paths: list[Path]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: Process | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OpaServer:
        args = [
            opa_binary(),
            "run",
            "--server",
            "--addr",
            f"127.0.0.1:{self.port}",
            # Decision ids are only returned with decision logging on; send the log to
            # the console (our log file) rather than a remote service.
            "--set",
            "decision_logs.console=true",
            *self.extra_args,
            *[str(p) for p in self.paths],
        ]
        self.process = spawn(args, self.log_path)
        wait_for_http(self.url + "/health", self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def decide(self, policy_input: dict) -> dict:
        response = httpx.post(
            self.url + "/v1/data/gateway/decision", json={"input": policy_input}, timeout=5
        )
        response.raise_for_status()
        return response.json()


def opa_eval(query: str, *, paths: list[Path], input_path: Path | None = None) -> str:
    """`opa eval` once (for checks that do not need a server)."""
    args = [opa_binary(), "eval", "--format", "json", *[f"--data={p}" for p in paths]]
    if input_path is not None:
        args.append(f"--input={input_path}")
    result = subprocess.run([*args, query], capture_output=True, text=True, timeout=60, check=True)
    return result.stdout
