"""Compiled policy modules kept on disk, so a restart does not compile the same Wasm again.

Compiling the shipped policy's module to native code (wasmtime's Cranelift) costs some
0.4 s of CPU, at every start and every reload, for a result that depends only on the
module's bytes, the wasmtime version and the engine's settings. wasmtime can
serialize a compiled module and load it back in about a millisecond.

An entry is named by the SHA-256 of the Wasm it was compiled from and the wasmtime
version; it holds the SHA-256 of the compiled artefact, then the artefact. A read
checks that digest before wasmtime sees a byte (a torn or damaged file is compiled
again, never loaded), and wasmtime itself refuses an artefact of another version or
engine setting. Anything wrong with an entry costs a compilation, nothing else; a
folder that cannot be written likewise.

What wasmtime loads from an entry is native code it runs without checking it: whoever
can write the folder can run code in the gateway. So there is no cache unless
``policy.module_cache_dir`` names a folder that is the gateway's alone (dev mode uses
the user's own cache folder, beside the conformance memo); docs/decisions/0028.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import wasmtime

log = logging.getLogger(__name__)

# Entries kept; older ones are removed when a new one is written.
KEEP = 20
_MAGIC = b"agw-cwasm-v1\0"
_DIGEST_BYTES = 32


def _wasmtime_version() -> str:
    try:
        return version("wasmtime")
    except PackageNotFoundError:  # a vendored wasmtime: its own compatibility check holds
        return "unknown"


class ModuleCache:
    """Compiled modules in ``folder``, by the hash of their Wasm."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def compile(self, engine: wasmtime.Engine, wasm: bytes) -> wasmtime.Module:
        """The module compiled from ``wasm``: loaded from the folder when an intact entry
        is there, else compiled (raising what `wasmtime.Module` raises) and stored."""
        path = self._path(wasm)
        module = self._load(engine, path)
        if module is not None:
            return module
        module = wasmtime.Module(engine, wasm)
        self._store(path, bytes(module.serialize()))
        return module

    def _path(self, wasm: bytes) -> Path:
        key = hashlib.sha256(
            hashlib.sha256(wasm).digest() + b"\0" + _wasmtime_version().encode()
        ).hexdigest()
        return self.folder / f"module-{key}.cwasm"

    def _load(self, engine: wasmtime.Engine, path: Path) -> wasmtime.Module | None:
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("compiled policy module %s not readable, compiling: %s", path, exc)
            return None
        header = len(_MAGIC) + _DIGEST_BYTES
        artefact = content[header:]
        digest = content[len(_MAGIC) : header]
        if not content.startswith(_MAGIC) or hashlib.sha256(artefact).digest() != digest:
            log.warning("compiled policy module %s is damaged: compiling again", path)
            return None
        try:
            return wasmtime.Module.deserialize(engine, artefact)
        except wasmtime.WasmtimeError as exc:  # another wasmtime or engine setting
            log.info("compiled policy module %s not usable here (%s): compiling", path, exc)
            return None

    def _store(self, path: Path, artefact: bytes) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # Written whole, then renamed: a reader never sees a half-written entry.
            handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".module-")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(_MAGIC + hashlib.sha256(artefact).digest() + artefact)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            self._prune()
        except OSError as exc:
            log.warning("could not keep the compiled policy module in %s: %s", self.folder, exc)

    def _prune(self) -> None:
        kept = sorted(self.folder.glob("module-*.cwasm"), key=lambda p: p.stat().st_mtime)
        for old in kept[:-KEEP]:
            old.unlink(missing_ok=True)
