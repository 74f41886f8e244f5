"""The configuration file: its models, its error messages and the YAML loader."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from gateway.config import (
    HttpUpstream,
    McpHttpUpstream,
    McpStdioUpstream,
    MintedCredentials,
    NoCredentials,
    StaticCredentials,
    load_config,
    parse_config,
)
from gateway.errors import ConfigError

IDENTITY: dict[str, Any] = {
    "issuers": [{"issuer": "https://idp.example", "jwks_url": "https://idp.example/jwks"}]
}

FULL: dict[str, Any] = {
    "server": {"host": "0.0.0.0", "port": 9000, "public_url": "https://gw.example/"},
    "identity": {
        "audience": "https://gw.example",
        "issuers": [
            {"issuer": "https://idp.example", "jwks_url": "https://idp.example/jwks"},
            {"issuer": "dev", "key_files": ["keys/dev.pem"], "algorithms": ["EdDSA"]},
        ],
        "required_scopes": ["gateway"],
    },
    "policy": {"engine": "embedded", "path": "policies", "data": {"x": 1}, "timeout_ms": 250},
    "storage": {"url": "postgresql+psycopg://u:p@db/gw"},
    "upstreams": [
        {
            "name": "github",
            "url": "https://mcp.github.example/mcp",
            "credentials": {"mode": "static", "env": "GITHUB_TOKEN"},
            "risk": {"default": "high", "tools": {"list_issues": "low"}},
            "trust_annotations": True,
        },
        {
            "name": "files",
            "transport": "stdio",
            "command": ["python", "-m", "files_server"],
            "env": {"ROOT": "/srv"},
        },
        {
            "name": "tickets",
            "kind": "http",
            "base_url": "https://tickets.example/api",
            "credentials": {"mode": "jwt", "audience": "tickets", "ttl_s": 30},
            "tools": [
                {
                    "name": "get_ticket",
                    "method": "GET",
                    "path": "/tickets/{id}",
                    "input_schema": {
                        "type": "object",
                        "properties": {"id": {"type": "string"}},
                        "required": ["id"],
                    },
                    "annotations": {"readOnlyHint": True},
                }
            ],
        },
    ],
    "limits": {"max_body_bytes": 4096},
    "catalog_refresh_s": 0,
}


def problems(data: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="gateway.yaml")
    return caught.value.message


def with_upstreams(*upstreams: dict[str, Any]) -> dict[str, Any]:
    return {"identity": IDENTITY, "upstreams": list(upstreams)}


# --- a valid config ----------------------------------------------------------------


def test_full_config_parses_every_upstream_kind_and_credential_mode() -> None:
    config = parse_config(copy.deepcopy(FULL))
    github, files, tickets = config.upstreams
    assert isinstance(github, McpHttpUpstream)
    assert github.transport == "streamable_http"
    assert isinstance(github.credentials, StaticCredentials)
    assert github.credentials.env == "GITHUB_TOKEN"
    assert github.credentials.header == "Authorization"
    assert github.risk.tools == {"list_issues": "low"}
    assert isinstance(files, McpStdioUpstream)
    assert files.command == ["python", "-m", "files_server"]
    assert isinstance(files.credentials, NoCredentials)
    assert isinstance(tickets, HttpUpstream)
    assert isinstance(tickets.credentials, MintedCredentials)
    assert tickets.credentials.ttl_s == 30
    assert tickets.tools[0].method == "GET"
    assert config.identity.issuers[1].key_files == [Path("keys/dev.pem")]
    assert config.policy.timeout_ms == 250
    assert config.limits.max_body_bytes == 4096
    # public_url loses its trailing slash; audience is the configured one.
    assert config.public_url == "https://gw.example"
    assert config.audience == "https://gw.example"


def test_minimal_config_takes_documented_defaults() -> None:
    config = parse_config({"identity": IDENTITY})
    assert config.upstreams == []
    assert config.identity.issuers[0].algorithms == ["RS256", "ES256", "EdDSA"]
    assert config.storage.url == "sqlite:///var/gateway.db"
    assert config.public_url == "http://127.0.0.1:8080"
    assert config.audience == config.public_url  # no audience: the public URL


def test_config_is_frozen() -> None:
    config = parse_config({"identity": IDENTITY})
    with pytest.raises(ValueError):
        config.catalog_refresh_s = 1  # type: ignore[misc]


# --- errors name the key path and the problem ----------------------------------------


def test_missing_field_names_its_path() -> None:
    message = problems(
        with_upstreams({"name": "a", "url": "http://a"}, {"name": "b", "transport": "stdio"})
    )
    assert "gateway.yaml is invalid" in message
    assert "upstreams[1].command: Field required" in message


def test_missing_identity_is_reported() -> None:
    assert "identity: Field required" in problems({})


def test_top_level_must_be_a_mapping() -> None:
    message = problems(["identity"])
    assert "gateway.yaml" in message
    assert "mapping" in message


@pytest.mark.parametrize("algorithm", ["HS256", "HS512", "none"])
def test_hmac_and_none_algorithms_are_refused(algorithm: str) -> None:
    data = {"identity": {"issuers": [{**IDENTITY["issuers"][0], "algorithms": [algorithm]}]}}
    message = problems(data)
    assert "identity.issuers[0].algorithms" in message
    assert repr(algorithm) in message
    assert "HMAC" in message


def test_empty_algorithm_list_is_refused() -> None:
    data = {"identity": {"issuers": [{**IDENTITY["issuers"][0], "algorithms": []}]}}
    assert "identity.issuers[0].algorithms: at least one algorithm" in problems(data)


@pytest.mark.parametrize(
    "issuer",
    [
        {"issuer": "x", "jwks_url": "https://x/jwks", "key_files": ["k.pem"]},
        {"issuer": "x"},
    ],
    ids=["both", "neither"],
)
def test_issuer_needs_exactly_one_key_source(issuer: dict[str, Any]) -> None:
    message = problems({"identity": {"issuers": [issuer]}})
    assert "identity.issuers[0]: give exactly one of jwks_url or key_files" in message


def test_duplicate_issuers_are_refused() -> None:
    issuer = IDENTITY["issuers"][0]
    message = problems({"identity": {"issuers": [issuer, issuer]}})
    assert "identity: issuers must be unique" in message
    assert "https://idp.example" in message


def test_duplicate_upstream_names_are_refused() -> None:
    message = problems(
        with_upstreams({"name": "a", "url": "http://a"}, {"name": "a", "url": "http://b"})
    )
    assert "upstream names must be unique; repeated: ['a']" in message


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"identity": IDENTITY, "sever": {}}, "sever: Extra inputs are not permitted"),
        (
            with_upstreams({"name": "a", "url": "http://a", "timout_s": 3}),
            "upstreams[0].timout_s: Extra inputs are not permitted",
        ),
        (
            {"identity": {**IDENTITY, "leway_s": 5}},
            "identity.leway_s: Extra inputs are not permitted",
        ),
        (
            with_upstreams(
                {"name": "a", "url": "http://a", "credentials": {"mode": "none", "env": "X"}}
            ),
            "upstreams[0].credentials.env: Extra inputs are not permitted",
        ),
    ],
    ids=["top", "upstream", "identity", "credentials"],
)
def test_unknown_keys_are_rejected(data: dict[str, Any], where: str) -> None:
    assert where in problems(data)


def test_jwt_credentials_on_stdio_are_refused() -> None:
    message = problems(
        with_upstreams(
            {"name": "a", "transport": "stdio", "command": ["srv"], "credentials": {"mode": "jwt"}}
        )
    )
    assert "upstreams[0]: credentials mode 'jwt' needs an HTTP upstream" in message


@pytest.mark.parametrize(
    "credentials",
    [{"mode": "static", "env": "A", "file": "a.txt"}, {"mode": "static"}],
    ids=["both", "neither"],
)
def test_static_credentials_need_exactly_one_source(credentials: dict[str, Any]) -> None:
    message = problems(with_upstreams({"name": "a", "url": "http://a", "credentials": credentials}))
    assert "upstreams[0].credentials: give exactly one of env or file" in message


def test_unknown_credentials_mode_is_named() -> None:
    message = problems(
        with_upstreams({"name": "a", "url": "http://a", "credentials": {"mode": "magic"}})
    )
    assert "upstreams[0].credentials:" in message
    assert "'magic'" in message


def test_minted_token_lifetime_is_bounded() -> None:
    message = problems(
        with_upstreams(
            {"name": "a", "url": "http://a", "credentials": {"mode": "jwt", "ttl_s": 3600}}
        )
    )
    assert "upstreams[0].credentials.ttl_s" in message


@pytest.mark.parametrize("url", ["mysql://db/gw", "postgres://db/gw", "/var/gw.db", ""])
def test_unsupported_storage_url_is_refused(url: str) -> None:
    message = problems({"identity": IDENTITY, "storage": {"url": url}})
    assert "storage.url: only sqlite:/// and postgresql:// URLs are supported" in message


def test_upstream_name_pattern_is_enforced() -> None:
    message = problems(with_upstreams({"name": "Git Hub", "url": "http://a"}))
    assert "upstreams[0].name:" in message


def test_http_upstream_needs_tools() -> None:
    message = problems(
        with_upstreams({"name": "a", "kind": "http", "base_url": "http://a", "tools": []})
    )
    assert "upstreams[0].tools:" in message


def test_every_problem_is_listed() -> None:
    message = problems(
        {"identity": IDENTITY, "storage": {"url": "mysql://x"}, "server": {"port": 70000}}
    )
    assert "storage.url:" in message
    assert "server.port:" in message


# --- load_config on a file ---------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_load_config_resolves_relative_paths_against_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(
        folder / "gateway.yaml",
        """
identity:
  signing_key_file: keys/signing.pem
  issuers:
    - issuer: dev
      key_files: [keys/dev.pem, /abs/other.pem]
policy:
  path: rego
storage:
  url: sqlite:///state/gw.db
data_dir: var
upstreams:
  - name: files
    transport: stdio
    command: [python, server.py]
    cwd: servers
  - name: api
    url: http://api.example/mcp
    credentials: {mode: static, file: secrets/api.token}
""",
    )
    config = load_config(path)
    assert config.identity.signing_key_file == folder / "keys/signing.pem"
    assert config.identity.issuers[0].key_files == [folder / "keys/dev.pem", Path("/abs/other.pem")]
    assert config.policy.path == folder / "rego"
    assert config.storage.url == f"sqlite:///{folder / 'state/gw.db'}"
    assert config.data_dir == folder / "var"
    stdio, api = config.upstreams
    assert isinstance(stdio, McpStdioUpstream)
    assert stdio.cwd == folder / "servers"
    assert isinstance(api.credentials, StaticCredentials)
    assert api.credentials.file == folder / "secrets/api.token"


def test_load_config_keeps_absolute_and_memory_storage(tmp_path: Path) -> None:
    path = write(
        tmp_path / "gateway.yaml",
        """
identity:
  issuers: [{issuer: dev, jwks_url: "https://idp/jwks"}]
storage: {url: "sqlite:///:memory:"}
policy: {path: /srv/policies}
""",
    )
    config = load_config(path)
    assert config.storage.url == "sqlite:///:memory:"
    assert config.policy.path == Path("/srv/policies")


def test_load_config_expands_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GW_TEST_ISSUER", "https://idp.test")
    monkeypatch.setenv("GW_TEST_PORT", "9443")
    path = write(
        tmp_path / "gateway.yaml",
        """
server: {port: ${GW_TEST_PORT}}
identity:
  issuers: [{issuer: "${GW_TEST_ISSUER}", jwks_url: "${GW_TEST_ISSUER}/jwks"}]
""",
    )
    config = load_config(path)
    assert config.server.port == 9443
    assert config.identity.issuers[0].issuer == "https://idp.test"
    assert config.identity.issuers[0].jwks_url == "https://idp.test/jwks"


def test_load_config_missing_variable_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GW_TEST_UNSET_VARIABLE", raising=False)
    path = write(
        tmp_path / "gateway.yaml",
        "identity:\n  issuers: [{issuer: '${GW_TEST_UNSET_VARIABLE}', jwks_url: u}]\n",
    )
    with pytest.raises(ConfigError, match=r"\$\{GW_TEST_UNSET_VARIABLE\}.*not set"):
        load_config(path)


def test_load_config_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in caught.value.message
    assert "cannot read" in caught.value.message


def test_load_config_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    # A directory cannot be read as a file (the same OSError path as a mode-000 file,
    # which root could still read).
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(tmp_path) in caught.value.message


def test_load_config_invalid_yaml_names_the_path(tmp_path: Path) -> None:
    path = write(tmp_path / "gateway.yaml", "identity: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in caught.value.message
    assert "not valid YAML" in caught.value.message


def test_load_config_validation_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "gateway.yaml", "identity:\n  issuers: []\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.message.startswith(f"{path} is invalid")
    assert "identity.issuers:" in caught.value.message


def test_empty_file_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "gateway.yaml", "")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_the_concurrency_lease_must_outlast_an_approval_hold() -> None:
    # A held call keeps its concurrency slot; a lease shorter than the hold would let
    # the slot stop counting while the call may still run.
    config = parse_config({"identity": IDENTITY})
    assert config.limits.concurrency_lease_s == 900.0
    with pytest.raises(
        ConfigError, match=r"concurrency_lease_s \(20\) must be longer than approvals.hold_s \(20\)"
    ):
        parse_config(
            {
                "identity": IDENTITY,
                "limits": {"concurrency_lease_s": 20},
                "approvals": {"hold_s": 20},
            }
        )
    ok = parse_config({"identity": IDENTITY, "limits": {"concurrency_lease_s": 21}})
    assert ok.limits.concurrency_lease_s == 21
