"""Real processes for integration and end-to-end tests: the gateway and test upstreams.

Everything runs as its own OS process on a loopback port, as a user would run it, so
tests exercise the real CLI, config loading, uvicorn and the SDK transports. Output goes
to a log file that is printed when a process fails to become ready.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.identity import generate_dev_issuer, mint_token
from tests.support.waiting import TIMEOUT_S, eventually

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
TEST_ISSUER = "https://issuer.test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_calls(call_log: Path) -> list[dict[str, Any]]:
    if not call_log.exists():
        return []
    return [json.loads(line) for line in call_log.read_text().splitlines() if line.strip()]


@dataclass
class Process:
    """A child process with its log; `stop` sends SIGTERM, `kill` SIGKILL."""

    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)


def spawn(
    args: list[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
) -> Process:
    log = log_path.open("ab")
    popen = subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    return Process(popen, log_path)


def wait_for_http(url: str, process: Process, *, timeout: float = TIMEOUT_S) -> None:
    last = ["no answer"]

    def answered() -> bool:
        if process.popen.poll() is not None:
            raise RuntimeError(f"process exited with {process.popen.returncode}:\n{process.log()}")
        try:
            response = httpx.get(url, timeout=5)
        except httpx.HTTPError as exc:
            last[0] = repr(exc)
            return False
        last[0] = f"HTTP {response.status_code}: {response.text[:200]}"
        return response.status_code == 200

    try:
        eventually(answered, f"{url} answers 200", timeout_s=timeout)
    except AssertionError:
        process.kill()
        why = f"{url} not ready after {timeout}s ({last[0]})"
        raise RuntimeError(f"{why}:\n{process.log()}") from None


def wait_for_port(port: int, process: Process, *, timeout: float = TIMEOUT_S) -> None:
    def open_() -> bool:
        if process.popen.poll() is not None:
            raise RuntimeError(f"process exited with {process.popen.returncode}:\n{process.log()}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        eventually(open_, f"port {port} open", timeout_s=timeout)
    except AssertionError:
        process.kill()
        raise RuntimeError(f"port {port} not open after {timeout}s:\n{process.log()}") from None


@dataclass
class McpUpstreamServer:
    """The recording test MCP server over Streamable HTTP."""

    port: int
    call_log: Path
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def calls(self) -> list[dict[str, Any]]:
        return read_calls(self.call_log)

    @classmethod
    def start(cls, directory: Path, port: int | None = None) -> McpUpstreamServer:
        port = port or free_port()
        call_log = directory / f"mcp-upstream-{port}.calls.jsonl"
        process = spawn(
            [sys.executable, "-m", "tests.support.upstream_mcp", "http", str(port), str(call_log)],
            directory / f"mcp-upstream-{port}.log",
        )
        # Not an HTTP probe: a GET on the SDK's stateless endpoint is a never-ending stream.
        wait_for_port(port, process)
        return cls(port, call_log, process)


def stdio_upstream_command(call_log: Path) -> list[str]:
    return [sys.executable, "-m", "tests.support.upstream_mcp", "stdio", str(call_log)]


@dataclass
class HttpApiServer:
    port: int
    call_log: Path
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calls(self) -> list[dict[str, Any]]:
        return read_calls(self.call_log)

    @classmethod
    def start(cls, directory: Path, *, jwks_url: str | None = None) -> HttpApiServer:
        port = free_port()
        call_log = directory / f"http-api-{port}.calls.jsonl"
        args = [sys.executable, "-m", "tests.support.http_api", str(port), str(call_log)]
        if jwks_url:
            args.append(jwks_url)
        process = spawn(args, directory / f"http-api-{port}.log")
        if jwks_url:
            # A verifying server answers an untokened probe with 401, never 200.
            wait_for_port(port, process)
        else:
            wait_for_http(f"http://127.0.0.1:{port}/items/ping", process)
        return cls(port, call_log, process)


def upstream_grants(upstream: str, role: str = "agent") -> list[dict[str, Any]]:
    """Grants of everything one upstream offers: its tools, prompts and resources, and
    its requests for client input (elicitation, sampling, roots)."""
    return [
        {"role": role, "tool": f"{upstream}__*"},
        {"role": role, "prompt": f"{upstream}__*"},
        {"role": role, "resource": f"gateway:{upstream}/*"},
        {"role": role, "client_input": "*", "upstream": upstream},
    ]


def write_policy(
    directory: Path, grants: list[dict[str, Any]], *, policies: Path = POLICIES, **settings: Any
) -> Path:
    """The shipped policy modules (of ``policies``: another release's, say) with
    test-specific grants (tests excluded)."""
    target = directory / "policy"
    shutil.copytree(
        policies / "gateway", target / "gateway", ignore=shutil.ignore_patterns("*_test.rego")
    )
    data = {
        "max_chain_length": 4,
        "blocked_actors": [],
        "approval_ttl_s": 3600,
        "secret_argument_names": ["api_key", "password", "secret", "token", "authorization"],
        "grants": grants,
        **settings,
    }
    (target / "data.json").write_text(json.dumps({"gateway_data": data}, indent=2))
    return target


@dataclass
class GatewayServer:
    """`gateway serve --config FILE` in a child process, with a token issuer for tests."""

    directory: Path
    config: dict[str, Any]
    port: int
    issuer_key: Path
    process: Process | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def configure(
        cls,
        directory: Path,
        *,
        upstreams: list[dict[str, Any]],
        policy: Path | None = None,
        policy_config: dict[str, Any] | None = None,
        storage_url: str | None = None,
        identity: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> GatewayServer:
        # `policy_config` replaces the whole `policy` section (e.g. an OPA engine);
        # `policy` alone is the embedded engine on that folder, with a decision deadline
        # a busy test machine meets (the 500 ms default is for production hardware;
        # tests of the deadline set their own).
        if (policy is None) == (policy_config is None):
            raise ValueError("give exactly one of policy or policy_config")
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        private, public = generate_dev_issuer(directory / "issuer")
        config: dict[str, Any] = {
            "server": {"host": "127.0.0.1", "port": port},
            "identity": {
                "issuers": [
                    {"issuer": TEST_ISSUER, "key_files": [str(public)], "algorithms": ["EdDSA"]}
                ],
                "signing_key_file": str(directory / "keys" / "gateway.pem"),
                **(identity or {}),
            },
            "policy": policy_config
            if policy_config is not None
            else {"path": str(policy), "timeout_ms": 10_000},
            "storage": {"url": storage_url or f"sqlite:///{directory / 'gateway.db'}"},
            "upstreams": upstreams,
            "limits": limits or {},
            "audit": {"origin": "test.gateway/audit"},
            "catalog_refresh_s": 0,
        }
        return cls(directory, config, port, private, extra_env=env or {})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return self.url + "/mcp"

    @property
    def config_path(self) -> Path:
        return self.directory / "gateway.yaml"

    def start(self) -> GatewayServer:
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.process = spawn(
            [sys.executable, "-m", "gateway", "serve", "--config", str(self.config_path)],
            self.directory / "gateway.log",
            env=self.extra_env,
        )
        wait_for_http(self.url + "/healthz", self.process)
        return self

    def stop(self) -> int:
        assert self.process is not None
        return self.process.stop()

    def token(
        self,
        sub: str = "agent:test",
        *,
        roles: tuple[str, ...] = ("agent",),
        scopes: tuple[str, ...] = (),
        act: tuple[str, ...] = (),
        ttl_s: int = 600,
    ) -> str:
        return mint_token(
            self.issuer_key,
            issuer=TEST_ISSUER,
            audience=self.url,
            sub=sub,
            roles=roles,
            scopes=scopes,
            act=act,
            ttl_s=ttl_s,
        )

    def headers(self, token: str | None = None, **token_args: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token(**token_args)}"}

    def log(self) -> str:
        return self.process.log() if self.process else ""


def processes_with_env(name: str, value: str) -> set[int]:
    """The pids of live processes whose environment sets ``name`` to ``value`` (Linux:
    /proc): how a test finds the children a process started, a stdio upstream's for
    one, also after that process died. A zombie's environment reads empty."""
    wanted = f"{name}={value}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if wanted in environ.split(b"\0"):
            found.add(int(entry.name))
    return found
