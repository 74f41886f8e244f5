"""OPA bundles: reading a ``.tar.gz`` into the Wasm module, data and revision it carries.

A bundle built with ``opa build -t wasm -e gateway/decision -e gateway/visible`` holds
``/policy.wasm`` (named by the manifest's ``wasm`` list), ``data.json`` documents
(each mounted at its folder's path, as OPA mounts them), the Rego sources, a
``.manifest`` (``revision``, ``roots``, ``wasm``) and, when signed, ``.signatures.json``
(checked by gateway.policy.bundle_signing before anything here is trusted).

Reading is bounded: the archive, each file and the sum of the files have a size cap,
and a path that is absolute after normalisation, climbs out with ``..`` or is not a
regular file is refused; a bundle is untrusted input until its signature is checked.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import PolicyLoadError

MAX_BUNDLE_BYTES = 64 << 20  # compressed
MAX_FILES_BYTES = 256 << 20  # uncompressed, all files together
MAX_FILES = 10_000
MANIFEST = ".manifest"
SIGNATURES = ".signatures.json"
DATA_FILES = ("data.json", "data.yaml")
ENTRYPOINTS = ("gateway/decision", "gateway/visible")


class BundleInvalid(PolicyLoadError):
    """A bundle that cannot be read, or that does not hold a gateway policy."""

    code = "policy_bundle_invalid"


@dataclass(frozen=True)
class Bundle:
    """The files of a bundle (path without the leading slash → bytes) and what they say."""

    files: dict[str, bytes]
    manifest: dict[str, Any]
    wasm: bytes
    data: dict[str, Any]
    digest: str  # sha256 of the archive, for a bundle without a manifest revision
    signatures: bytes | None = field(default=None, repr=False)

    @property
    def revision(self) -> str:
        """The manifest's revision, else the archive's digest (never empty)."""
        revision = self.manifest.get("revision")
        if isinstance(revision, str) and revision:
            return revision
        return "sha256:" + self.digest


def read_bundle(archive: bytes, *, origin: str) -> Bundle:
    """Reads a bundle archive; raises `BundleInvalid` naming ``origin`` and the problem."""
    if len(archive) > MAX_BUNDLE_BYTES:
        raise BundleInvalid(f"bundle {origin} is larger than {MAX_BUNDLE_BYTES >> 20} MiB")
    files = _untar(archive, origin)
    signatures = files.pop(SIGNATURES, None)
    manifest = _manifest(files, origin)
    wasm = _wasm(files, manifest, origin)
    data = _data(files, origin)
    return Bundle(
        files=files,
        manifest=manifest,
        wasm=wasm,
        data=data,
        digest=hashlib.sha256(archive).hexdigest(),
        signatures=signatures,
    )


def _untar(archive: bytes, origin: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar:
                if member.isdir():
                    continue
                name = _clean(member.name, origin)
                if not member.isreg():
                    raise BundleInvalid(f"bundle {origin}: {name} is not a regular file")
                total += member.size
                if total > MAX_FILES_BYTES or len(files) >= MAX_FILES:
                    raise BundleInvalid(
                        f"bundle {origin} unpacks to more than {MAX_FILES_BYTES >> 20} MiB "
                        f"or {MAX_FILES} files"
                    )
                if name in files:
                    raise BundleInvalid(f"bundle {origin} holds {name} twice")
                extracted = tar.extractfile(member)
                files[name] = extracted.read() if extracted else b""
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError) as exc:
        raise BundleInvalid(f"bundle {origin} is not a readable .tar.gz: {exc}") from None
    return files


def _clean(name: str, origin: str) -> str:
    path = posixpath.normpath("/" + name.replace("\\", "/")).lstrip("/")
    if not path or path.startswith("..") or path != posixpath.normpath(name.lstrip("/")):
        raise BundleInvalid(f"bundle {origin} holds a file with an unsafe path: {name!r}")
    return path


def _manifest(files: dict[str, bytes], origin: str) -> dict[str, Any]:
    raw = files.get(MANIFEST)
    if raw is None:
        raise BundleInvalid(
            f"bundle {origin} has no .manifest; build it with `opa build -t wasm` "
            "(docs/policies.md, 'Bundles')"
        )
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise BundleInvalid(f"bundle {origin}: .manifest is not JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise BundleInvalid(f"bundle {origin}: .manifest is not a JSON object")
    return manifest


def _wasm(files: dict[str, bytes], manifest: dict[str, Any], origin: str) -> bytes:
    modules = manifest.get("wasm")
    if not isinstance(modules, list) or not modules:
        raise BundleInvalid(
            f"bundle {origin} holds no Wasm module; build it with "
            "`opa build -t wasm -e gateway/decision -e gateway/visible`"
        )
    paths = {str(m.get("module", "")).lstrip("/") for m in modules if isinstance(m, dict)}
    entrypoints = {str(m.get("entrypoint")) for m in modules if isinstance(m, dict)}
    if len(paths) != 1:
        raise BundleInvalid(
            f"bundle {origin} holds {len(paths)} Wasm modules; the gateway takes one"
        )
    if "gateway/decision" not in entrypoints:
        raise BundleInvalid(
            f"bundle {origin}'s Wasm has no gateway/decision entrypoint "
            f"(it has {sorted(entrypoints)}); build it with -e gateway/decision -e gateway/visible"
        )
    path = paths.pop()
    if path not in files:
        raise BundleInvalid(f"bundle {origin}: the manifest names {path}, which it does not hold")
    return files[path]


def _parse_data(name: str, content: bytes) -> Any:
    """One data document; raises ValueError (YAML's errors too) when it is unreadable."""
    if name == "data.json":
        return json.loads(content)
    import yaml  # lazily: serving reads no YAML (start time, docs/performance.md)

    try:
        return yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None


def _data(files: dict[str, bytes], origin: str) -> dict[str, Any]:
    """Every data document, mounted at its folder and merged as OPA merges them."""
    merged: dict[str, Any] = {}
    for path in sorted(files):
        folder, name = posixpath.split(path)
        if name not in DATA_FILES:
            continue
        try:
            document = _parse_data(name, files[path])
        except ValueError as exc:
            raise BundleInvalid(f"bundle {origin}: {path} is not valid {name[5:]}: {exc}") from None
        for part in reversed([p for p in folder.split("/") if p]):
            document = {part: document}
        merge_data(merged, document, source=f"bundle {origin}: {path}")
    return merged


def merge_data(into: dict[str, Any], document: Any, *, source: str, at: str = "data") -> None:
    """Merges objects key by key as OPA does; any other overlap is a conflict."""
    if not isinstance(document, dict):
        raise BundleInvalid(f"{source}: {at} must be a JSON object")
    for key, value in document.items():
        if key not in into:
            into[key] = copy.deepcopy(value)  # never alias the document merged in
        elif isinstance(into[key], dict) and isinstance(value, dict):
            merge_data(into[key], value, source=source, at=f"{at}.{key}")
        else:
            raise BundleInvalid(f"{source} conflicts with other policy data at {at}.{key}")
