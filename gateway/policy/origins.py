"""Where the embedded engine's policy comes from: a Rego folder, a bundle file, or a
bundle server.

Each origin answers one question, `prepare`: is there a policy other than the one in
force, and if so, here it is, compiled and verified but not yet in force (the reloader,
gateway.policy.reload, checks its conformance cases, records it and swaps it in).

- `FolderOrigin`: the folder's content hash decides whether anything changed; OPA
  compiles it (gateway.policy.folder).
- `BundleFileOrigin`: a ``.tar.gz`` on disk; its digest decides.
- `BundleUrlOrigin`: a bundle server, polled as OPA polls one: ``GET`` with
  ``If-None-Match: <the last ETag>``; ``304 Not Modified`` means unchanged. The ETag of
  a bundle that was refused is remembered too, so a bad bundle is refused (and
  recorded) once, not at every poll.

A bundle's signature is checked (gateway.policy.bundle_signing) before anything in it
is used; an unsigned one is refused unless ``allow_unsigned`` says otherwise.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.config import BundleConfig, EmbeddedPolicyConfig
from gateway.errors import PolicyLoadError
from gateway.policy.bundle import MAX_BUNDLE_BYTES, Bundle, BundleInvalid, read_bundle
from gateway.policy.bundle_signing import verify_bundle
from gateway.policy.embedded import (
    CompiledPolicy,
    EmbeddedEngine,
    compile_source,
    limits_of,
    load_bundle,
    module_cache_of,
)
from gateway.policy.folder import read_policy

log = logging.getLogger(__name__)

# A revision from an unverified bundle is recorded in policy.rejected; keep it short.
_MAX_REVISION_CHARS = 200


@dataclass(frozen=True)
class Prepared:
    """What `prepare` found: the candidate's revision, and the candidate itself unless
    it is the policy in force (``compiled`` None: unchanged)."""

    revision: str | None
    compiled: CompiledPolicy | None = None


class OriginRejected(Exception):
    """A candidate was refused; ``revision`` is what it claimed to be, if known."""

    def __init__(self, revision: str | None, error: PolicyLoadError) -> None:
        super().__init__(error.message)
        self.revision = revision
        self.error = error


class FolderOrigin:
    """A Rego folder, compiled to Wasm by OPA whenever its content changes."""

    polls = False

    def __init__(self, config: EmbeddedPolicyConfig, path: Path | None = None) -> None:
        self.config = config
        self.path = Path(path or config.path)
        self.watched = [self.path]

    def prepare(self, current: CompiledPolicy | None) -> Prepared:
        revision: str | None = None
        try:
            source = read_policy(self.path)
            revision = source.revision(self.config.data)
            if current is not None and revision == current.revision:
                return Prepared(revision)
            opa = str(self.config.opa_binary) if self.config.opa_binary else None
            compiled = compile_source(
                source,
                self.config.data,
                limits=limits_of(self.config),
                opa=opa,
                module_cache=module_cache_of(self.config),
            )
            return Prepared(revision, compiled)
        except PolicyLoadError as exc:
            raise OriginRejected(revision, exc) from None


class _BundleOrigin:
    polls = False

    def __init__(self, config: EmbeddedPolicyConfig, bundle: BundleConfig) -> None:
        self.config = config
        self.bundle = bundle

    def _accept(self, archive: bytes, origin: str) -> CompiledPolicy:
        bundle: Bundle | None = None
        try:
            bundle = read_bundle(archive, origin=origin)
            if self.bundle.signing is not None:
                verify_bundle(bundle, self.bundle.signing, origin=origin)
            return load_bundle(
                bundle,
                extra_data=self.config.data,
                limits=limits_of(self.config),
                module_cache=module_cache_of(self.config),
            )
        except PolicyLoadError as exc:
            claimed = bundle.revision[:_MAX_REVISION_CHARS] if bundle is not None else None
            raise OriginRejected(claimed, exc) from None


class BundleFileOrigin(_BundleOrigin):
    """A bundle file, reloaded when its bytes change."""

    def __init__(self, config: EmbeddedPolicyConfig, bundle: BundleConfig) -> None:
        super().__init__(config, bundle)
        assert bundle.file is not None
        self.path = Path(bundle.file)
        self.watched = [self.path]

    def prepare(self, current: CompiledPolicy | None) -> Prepared:
        try:
            archive = self.path.read_bytes()
        except OSError as exc:
            error = BundleInvalid(f"cannot read bundle {self.path}: {exc}")
            raise OriginRejected(None, error) from None
        if _same(current, archive):
            return Prepared(current.revision if current else None)
        return Prepared(None, self._accept(archive, str(self.path)))


class BundleUrlOrigin(_BundleOrigin):
    """A bundle server, polled with ETags."""

    polls = True

    def __init__(self, config: EmbeddedPolicyConfig, bundle: BundleConfig) -> None:
        super().__init__(config, bundle)
        assert bundle.url is not None
        self.url = bundle.url
        self.watched: list[Path] = []
        self._etag: str | None = None  # of the last bundle seen, accepted or not

    def prepare(self, current: CompiledPolicy | None) -> Prepared:
        headers = {"If-None-Match": self._etag} if self._etag and current else {}
        try:
            with (
                httpx.Client(timeout=self.bundle.timeout_s) as client,
                client.stream("GET", self.url, headers=headers) as response,
            ):
                if response.status_code == 304:
                    return Prepared(current.revision if current else None)
                if response.status_code != 200:
                    raise BundleInvalid(
                        f"bundle server {self.url} answered HTTP {response.status_code}"
                    )
                archive = _read_capped(response, self.url)
                etag = response.headers.get("etag")
        except httpx.HTTPError as exc:
            error = BundleInvalid(f"bundle server {self.url} could not be reached: {exc}")
            raise OriginRejected(None, error) from None
        except BundleInvalid as exc:
            raise OriginRejected(None, exc) from None
        self._etag = etag
        if _same(current, archive):
            return Prepared(current.revision if current else None)
        return Prepared(None, self._accept(archive, self.url))


Origin = FolderOrigin | BundleFileOrigin | BundleUrlOrigin


def _read_capped(response: httpx.Response, url: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_BUNDLE_BYTES:
            raise BundleInvalid(f"bundle from {url} is larger than {MAX_BUNDLE_BYTES >> 20} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _same(current: CompiledPolicy | None, archive: bytes) -> bool:
    """Whether ``archive`` is the bundle in force, byte for byte."""
    bundle = current.bundle if current is not None else None
    return bundle is not None and hashlib.sha256(archive).hexdigest() == bundle.digest


def origin_for(config: EmbeddedPolicyConfig) -> Origin:
    if config.bundle is None:
        return FolderOrigin(config)
    if config.bundle.file is not None:
        return BundleFileOrigin(config, config.bundle)
    return BundleUrlOrigin(config, config.bundle)


def build_embedded_engine(config: EmbeddedPolicyConfig) -> EmbeddedEngine:
    """The engine the config names, with its first policy in force. Raises
    `PolicyLoadError` when there is no policy to start with (the gateway does not
    start: it would deny every call)."""
    origin = origin_for(config)
    try:
        first = origin.prepare(None)
    except OriginRejected as rejected:
        raise rejected.error from None
    assert first.compiled is not None
    log.info("policy %s loaded from %s", first.compiled.revision, describe(origin))
    return EmbeddedEngine(
        config.path if config.bundle is None else None,
        extra_data=config.data,
        limits=limits_of(config),
        opa=str(config.opa_binary) if config.opa_binary else None,
        compiled=first.compiled,
        module_cache=module_cache_of(config),
    )


def describe(origin: Origin) -> str:
    if isinstance(origin, BundleUrlOrigin):
        return f"bundle server {origin.url}"
    if isinstance(origin, BundleFileOrigin):
        return f"bundle {origin.path}"
    return f"policy folder {origin.path}"
