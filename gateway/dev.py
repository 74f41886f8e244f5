"""Dev mode: a complete gateway with no config file (``gateway serve --dev``).

Everything lives in one data folder (``var/dev`` by default, ignored by git): SQLite,
a dev token issuer key, the gateway's signing key and the demo upstream's sandbox.
Keys are generated on first start and reused afterwards, so tokens stay valid across
restarts.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import gateway
from gateway.config import Config, parse_config
from gateway.dev_state import DEFAULT_DEV_DIR
from gateway.errors import ConfigError
from gateway.identity import generate_dev_issuer, mint_token

DEV_ISSUER = "agent-gateway-dev"
DEV_TOKEN_TTL_S = 24 * 3600
DEV_CATALOG_REFRESH_S = 2.0

_SANDBOX_README = """This is the demo upstream's sandbox.
An agent with role "agent" may read files in here through demo__read_file,
and nothing outside it.
"""


@dataclass(frozen=True)
class DevSetup:
    config: Config
    issuer_key: Path
    sandbox: Path


def default_policy_path() -> Path:
    """`./policies` when run from a checkout, else the copy shipped in the package."""
    local = Path("policies")
    if (local / "gateway").is_dir():
        return local
    shipped = Path(str(resources.files("gateway") / "default_policies"))
    if shipped.is_dir():
        return shipped
    raise ConfigError("no policy folder found: run from the project folder or pass --policy DIR")


def dev_setup(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    data_dir: Path = DEFAULT_DEV_DIR,
    policy_path: Path | None = None,
) -> DevSetup:
    data_dir = data_dir.resolve()
    keys = data_dir / "keys"
    issuer_private, issuer_public = generate_dev_issuer(keys)
    sandbox = data_dir / "sandbox"
    sandbox.mkdir(parents=True, exist_ok=True)
    readme = sandbox / "README.txt"
    if not readme.exists():
        readme.write_text(_SANDBOX_README)
    config = parse_config(
        {
            "server": {"host": host, "port": port},
            "identity": {
                "issuers": [
                    {
                        "issuer": DEV_ISSUER,
                        "key_files": [str(issuer_public)],
                        "algorithms": ["EdDSA"],
                    }
                ],
                "signing_key_file": str(keys / "gateway-signing.pem"),
            },
            "policy": {
                "path": str((policy_path or default_policy_path()).resolve()),
                # Verdicts are keyed by policy, cases, engine and the gateway's code, so
                # they hold for every dev data folder of this user: a fresh var/dev (or
                # another checkout of the same code) skips the cases already passed.
                "conformance": {"memo_dir": str(user_cache_dir() / "conformance")},
                # Compiled Wasm likewise, by the module's hash: a restart loads the
                # native code instead of compiling it (gateway.policy.module_cache).
                "module_cache_dir": str(user_cache_dir() / "wasm"),
            },
            "storage": {"url": f"sqlite:///{data_dir / 'gateway.db'}"},
            "upstreams": [
                {
                    "name": "demo",
                    "transport": "stdio",
                    "command": [sys.executable, "-m", "gateway.demo.server"],
                    "env": {
                        "GATEWAY_DEMO_SANDBOX": str(sandbox),
                        # `gateway demo rug-pull` leaves its marker here.
                        "GATEWAY_DEMO_STATE": str(demo_state_dir(data_dir)),
                        # The demo server is the code of this gateway, also when that is
                        # a checkout on PYTHONPATH (a stdio child does not inherit it).
                        "PYTHONPATH": str(Path(gateway.__file__).resolve().parent.parent),
                    },
                    # The demo server is ours: its annotations can set risk tiers.
                    "trust_annotations": True,
                }
            ],
            "audit": {
                "origin": "dev.agent-gateway.local/audit",
                "signing_key_file": str(keys / "audit-signing.pem"),
            },
            "data_dir": str(data_dir),
            # Re-read tool lists often, so that a changed definition (a rug-pull, or
            # `gateway demo rug-pull`) is quarantined within seconds, not a minute.
            "catalog_refresh_s": DEV_CATALOG_REFRESH_S,
        },
        source="dev mode",
    )
    return DevSetup(config=config, issuer_key=issuer_private, sandbox=sandbox)


def user_cache_dir() -> Path:
    """$XDG_CACHE_HOME/agent-gateway, else ~/.cache/agent-gateway."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agent-gateway"


def demo_state_dir(data_dir: Path) -> Path:
    """Where the demo upstream looks for what `gateway demo` asked of it."""
    return data_dir.resolve() / "demo"


def dev_token(
    setup: DevSetup,
    *,
    sub: str,
    roles: tuple[str, ...] = (),
    scopes: tuple[str, ...] = (),
    act: tuple[str, ...] = (),
    ttl_s: int = DEV_TOKEN_TTL_S,
    audience: str | None = None,
) -> str:
    return mint_token(
        setup.issuer_key,
        issuer=DEV_ISSUER,
        audience=audience or setup.config.audience,
        sub=sub,
        roles=roles,
        scopes=scopes,
        act=act,
        ttl_s=ttl_s,
    )


def banner(setup: DevSetup) -> str:
    """What `gateway serve --dev` prints once it listens: URLs, tokens and commands to
    paste. The `gateway` commands need no --port or --url: they read the URL this
    gateway recorded in its data folder (gateway.dev_state)."""
    url = setup.config.public_url
    agent = dev_token(setup, sub="agent:demo", roles=("agent",))
    approver = dev_token(setup, sub="user:approver", roles=("approver",))
    return f"""
Agent tool gateway (dev mode), data in {setup.config.data_dir}

  MCP endpoint   {url}/mcp   (one upstream alone: {url}/mcp/demo)
                 tools demo__*, prompt demo__review, resources gateway:demo/demo://readme
                 and gateway:demo/file:///{{path}}, all through policy and the audit log
  REST API       {url}/v1/tools   (OpenAPI: {url}/openapi.json)
  Health         {url}/readyz
  Console        {url}/console   (sign in with the approver token below)
  Audit          {url}/console/audit   (needs role auditor: see More tokens)

  Dev agent token (role agent, 24 h):
    {agent}

  Dev approver token (role approver, 24 h):
    {approver}

Try it (paste into another terminal):

  curl -s -X POST {url}/v1/tools/demo__echo/call \\
    -H 'Authorization: Bearer {agent}' \\
    -H 'Content-Type: application/json' -d '{{"arguments": {{"text": "hello"}}}}'

Or point an MCP client at it, e.g. Claude Code:

  claude mcp add --transport http gateway {url}/mcp \\
    --header 'Authorization: Bearer {agent}'

More tokens: .venv/bin/gateway token --sub agent:me --role agent
             .venv/bin/gateway token --sub user:me --role auditor
Audit log:   .venv/bin/gateway audit tail
"""
