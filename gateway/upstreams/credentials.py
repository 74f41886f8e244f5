"""What the gateway presents to an upstream: its own credential, never the agent's token.

Each upstream has one mode (architecture.md §4): nothing, a static secret the admin provides,
or a short-lived JWT minted per call naming the agent and the delegation chain.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from gateway.config import Credentials, MintedCredentials, NoCredentials, StaticCredentials
from gateway.errors import ConfigError
from gateway.types import Principal

# Mints a JWT: (principal, audience, ttl_s) -> compact token.
Mint = Callable[[Principal, str, int], str]


class CredentialProvider:
    """Produces the headers for one upstream call."""

    def __init__(self, upstream: str, config: Credentials, *, default_audience: str, mint: Mint):
        self._upstream = upstream
        self._config = config
        self._mint = mint
        self._static_header: tuple[str, str] | None = None
        self._secret: str | None = None
        self._audience = default_audience
        if isinstance(config, StaticCredentials):
            self._secret = _read_secret(upstream, config)
            self._static_header = (config.header, config.prefix + self._secret)
        elif isinstance(config, MintedCredentials):
            self._audience = config.audience or default_audience

    @property
    def mode(self) -> str:
        return self._config.mode

    def static_headers(self) -> dict[str, str]:
        """Headers that are the same for every call (set once on a long-lived connection)."""
        if self._static_header is None:
            return {}
        name, value = self._static_header
        return {name: value}

    def stdio_env(self) -> dict[str, str]:
        """A stdio server gets the static secret in its environment instead of a header."""
        return {} if self._secret is None else {"GATEWAY_UPSTREAM_CREDENTIAL": self._secret}

    def headers_for(self, principal: Principal) -> dict[str, str]:
        """Headers for one call made on behalf of `principal`."""
        if isinstance(self._config, MintedCredentials):
            token = self._mint(principal, self._audience, self._config.ttl_s)
            return {self._config.header: f"Bearer {token}"}
        if isinstance(self._config, NoCredentials):
            return {}
        return self.static_headers()


def _read_secret(upstream: str, config: StaticCredentials) -> str:
    if config.env is not None:
        value = os.environ.get(config.env)
        if not value:
            raise ConfigError(
                f"upstreams[{upstream}].credentials: environment variable {config.env} is not set"
            )
        return value
    assert config.file is not None  # the config model guarantees one source
    try:
        value = Path(config.file).read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"upstreams[{upstream}].credentials: cannot read {config.file}: {exc.strerror}"
        ) from None
    if not value:
        raise ConfigError(f"upstreams[{upstream}].credentials: {config.file} is empty")
    return value
