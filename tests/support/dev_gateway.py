"""`gateway serve --dev` as a user runs it, in a folder of its own laid out like a
checkout (the repository's folders linked in, its own var/dev), on a free port.

The gateway and every command run with that folder as working directory, so dev mode
finds ./policies and keeps its state in ./var/dev, and the commands beside it (`gateway
token`, `gateway demo`, `gateway audit tail`) find the URL and keys the gateway left
there, exactly as after `make run`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import REPO, Process, free_port, spawn, wait_for_http

# What a checkout holds that commands in the docs use (.tools: OPA, where built).
# .git: the docs name the commit (`git rev-parse HEAD`) as a bundle's revision.
LINKED = (".venv", ".tools", ".git", "policies", "deploy", "docs", "scripts", "Makefile")


def lay_out_checkout(root: Path, *, copied: tuple[str, ...] = ()) -> Path:
    """Links the repository's folders into ``root``; those in ``copied`` are copies
    instead, for commands that write into them (the doc test regenerates conformance
    expectations, which must not touch the repository)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        if not (REPO / name).exists() or (root / name).exists():
            continue
        if name in copied:
            shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (root / name).symlink_to(REPO / name)
    return root


@dataclass
class DevGateway:
    root: Path
    port: int
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "var" / "dev"

    @classmethod
    def start(
        cls, root: Path, *, copied: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> DevGateway:
        """Starts it in ``root`` (a restart when ``root`` holds a var/dev already);
        ``env`` adds to `environment()` (e.g. a cache folder of the test's own)."""
        lay_out_checkout(root, copied=copied)
        port = free_port()
        process = spawn(
            [sys.executable, "-m", "gateway", "serve", "--dev", "--port", str(port)],
            root / "gateway.log",
            env={**environment(), **(env or {})},
            cwd=root,
        )
        # A first start runs the policy's conformance cases: allow for a busy machine.
        wait_for_http(f"http://127.0.0.1:{port}/readyz", process, timeout=300)
        return cls(root, port, process)

    def stop(self) -> int:
        return self.process.stop()

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", *args],
            capture_output=True,
            text=True,
            cwd=self.root,
            env={**environment(), **(env or {})},
            timeout=120,
        )

    def token(self, sub: str, *roles: str) -> str:
        args = ["token", "--sub", sub] + [a for role in roles for a in ("--role", role)]
        done = self.cli(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


# Dev mode remembers conformance passes per user (XDG_CACHE_HOME): the dev gateways of
# one test run share a cache of their own, not the user's.
_CACHE = Path(tempfile.mkdtemp(prefix="gateway-test-cache-"))


def environment() -> dict[str, str]:
    """The caller's environment, with the repository importable from any folder, the
    test run's cache, and no gateway settings of the caller's leaking in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GATEWAY_URL", "GATEWAY_TOKEN", "GATEWAY_CONFIG")
    }
    env["PYTHONPATH"] = str(REPO)
    env["XDG_CACHE_HOME"] = str(_CACHE)
    return env
