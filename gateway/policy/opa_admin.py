"""Managing a development OPA server: pushing a policy folder through the REST API.

Production OPA servers load signed bundles (``opa build -b policies/ --revision …``,
docs/policies.md) and are never written to over the API; this is for a developer's
``opa run --server`` next to a dev gateway.

A push mirrors what ``opa run --server policies/`` would load:
- every ``.rego`` module except ``*_test.rego``;
- every ``data.json``, mounted at its folder's path (``a/b/data.json`` → ``data.a.b``)
  and merged key by key as OPA merges them; each top-level key is written with
  ``PUT /v1/data/<key>``, so data the folder does not mention stays untouched.

OPA compiles each uploaded module together with those it already has, and files of
one package routinely call each other's functions (decision.rego uses approvals.rego
and the other way round), so no order of one-file uploads compiles. The modules of
each package are therefore joined into one module, ``PUT /v1/policies/push/<package>``:
the package clause once, the imports of every file (deduplicated), then each file's
rules verbatim. OPA's error places are mapped back to the original file and line.
Re-pushing replaces the whole package, so rules deleted from the folder disappear
from the server too. Packages that depend on each other are pushed in passes until
every one is accepted or a pass accepts none (then OPA's message is the error).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from gateway.errors import GatewayError


class OpaAdminError(GatewayError):
    """A management call to OPA failed (unreachable, or an unexpected answer)."""

    code = "opa_admin_failed"


class OpaRejected(OpaAdminError):
    """OPA refused a module or a data document; the message is OPA's."""

    code = "opa_rejected"


@dataclass(frozen=True)
class PackageModule:
    """The files of one package joined into the one module a push uploads."""

    package: str
    text: str
    files: list[str]
    # Row r of `text` (1-based) came from origins[r - 1]: (file, row in that file).
    origins: list[tuple[str, int]]

    @property
    def id(self) -> str:
        return "push/" + self.package

    def place(self, row: int) -> str:
        """The original file and row of a row of the joined module."""
        if 1 <= row <= len(self.origins) and self.origins[row - 1][1] > 0:
            file, original = self.origins[row - 1]
            return f"{file}:{original}"
        return f"{self.id}:{row}"  # a line the join wrote (package clause, imports)

    def translate(self, message: str) -> str:
        """Replaces places in the joined module that OPA names inside a message."""
        pattern = re.escape(self.id) + r":(\d+)"
        return re.sub(pattern, lambda m: self.place(int(m.group(1))), message)


@dataclass(frozen=True)
class PolicyFolder:
    """What a push uploads: one module per package, and the merged data document."""

    root: Path
    modules: list[PackageModule]
    data: dict[str, Any]
    data_files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PushReport:
    url: str
    modules: list[PackageModule]
    data_keys: list[str]
    data_files: list[str]


def read_policy_folder(root: Path) -> PolicyFolder:
    """Reads modules and ``data.json`` files; raises `OpaAdminError` naming the file."""
    if not root.is_dir():
        raise OpaAdminError(f"policy folder {root} does not exist")
    files = [p for p in sorted(root.rglob("*.rego")) if not p.name.endswith("_test.rego")]
    if not files:
        raise OpaAdminError(f"policy folder {root} holds no .rego modules")
    modules = join_by_package({p.relative_to(root).as_posix(): p.read_text() for p in files})
    merged: dict[str, Any] = {}
    data_files = []
    for path in sorted(root.rglob("data.json")):
        relative = path.relative_to(root)
        try:
            document: Any = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise OpaAdminError(f"{relative} is not valid JSON: {exc}") from None
        for part in reversed(relative.parent.parts):
            document = {part: document}
        _merge(merged, document, source=relative.as_posix())
        data_files.append(relative.as_posix())
    return PolicyFolder(root, modules, merged, data_files)


_PACKAGE = re.compile(r"^\s*package\s+(\S+)\s*(#.*)?$")
_IMPORT = re.compile(r"^\s*import\s+(\S+)(?:\s+as\s+(\w+))?\s*(#.*)?$")


def join_by_package(sources: dict[str, str]) -> list[PackageModule]:
    """One module per package: package clause, the files' imports, then their rules.

    The header of a file is everything up to its last import; comments and blank lines
    in it are dropped (package-scoped METADATA annotations with them). Two files that
    give one alias to different imports cannot be joined and are an error.
    """
    parsed: dict[str, list[tuple[str, list[tuple[str, int]], list[tuple[str, int]]]]] = {}
    for file, text in sources.items():
        lines = text.splitlines()
        package, imports, body_start = None, [], 0
        for index, line in enumerate(lines):
            stripped = line.strip()
            if package is None:
                match = _PACKAGE.match(line)
                if match:
                    package = match.group(1)
                elif stripped and not stripped.startswith("#"):
                    raise OpaAdminError(f"{file}:{index + 1}: expected a package clause")
                continue
            if _IMPORT.match(line):
                imports.append((line.strip(), index + 1))
                body_start = index + 1
            elif stripped and not stripped.startswith("#"):
                break
        if package is None:
            raise OpaAdminError(f"{file} has no package clause")
        body_start = body_start or next(
            i + 1 for i, line in enumerate(lines) if _PACKAGE.match(line)
        )
        body = [(lines[i], i + 1) for i in range(body_start, len(lines))]
        parsed.setdefault(package, []).append((file, imports, body))
    return [_join(package, parts) for package, parts in sorted(parsed.items())]


def _join(
    package: str, parts: list[tuple[str, list[tuple[str, int]], list[tuple[str, int]]]]
) -> PackageModule:
    text = [f"package {package}"]
    origins = [(parts[0][0], 0)]
    aliases: dict[str, tuple[str, str]] = {}  # alias → (import line, file)
    for file, imports, _ in parts:
        for line, row in imports:
            match = _IMPORT.match(line)
            assert match is not None
            path, alias = match.group(1), match.group(2) or match.group(1).split(".")[-1]
            seen = aliases.get(alias)
            if seen is None:
                aliases[alias] = (path, file)
                text.append(f"import {path}" + (f" as {match.group(2)}" if match.group(2) else ""))
                origins.append((file, row))
            elif seen[0] != path:
                raise OpaAdminError(
                    f"{file}:{row} imports {path} as {alias}, but {seen[1]} imports {seen[0]} "
                    f"as {alias}; files of package {package} are pushed as one module, so "
                    "use one alias per import"
                )
    for file, _, body in parts:
        text.append(f"# --- {file}")
        origins.append((file, 0))
        for line, row in body:
            text.append(line)
            origins.append((file, row))
    return PackageModule(package, "\n".join(text) + "\n", [p[0] for p in parts], origins)


def _merge(into: dict[str, Any], document: Any, *, source: str, at: str = "data") -> None:
    if not isinstance(document, dict):
        raise OpaAdminError(f"{source}: {at} must be a JSON object")
    for key, value in document.items():
        if isinstance(into.get(key), dict) and isinstance(value, dict):
            _merge(into[key], value, source=source, at=f"{at}.{key}")
        elif key in into:
            raise OpaAdminError(f"{source} conflicts with other policy data at {at}.{key}")
        else:
            into[key] = value


def push_policy_folder(url: str, root: Path, *, timeout_s: float = 10.0) -> PushReport:
    """Uploads a policy folder to the OPA server at ``url`` (see the module docstring)."""
    folder = read_policy_folder(root)
    base = url.rstrip("/")
    with httpx.Client(base_url=base, timeout=timeout_s) as client:
        _check_health(client, base)
        for key, value in sorted(folder.data.items()):
            response = _send(client, base, "PUT", "/v1/data/" + quote(key, safe=""), value)
            if response.status_code != 204:
                raise OpaRejected(
                    f"OPA at {base} refused data.{key} (HTTP {response.status_code}): "
                    f"{_opa_message(response)}"
                )
        _push_modules(client, base, folder.modules)
        _prune(client, base, {m.id for m in folder.modules})
    return PushReport(base, folder.modules, sorted(folder.data), folder.data_files)


def _push_modules(client: httpx.Client, base: str, modules: list[PackageModule]) -> None:
    remaining = modules
    while remaining:
        refused: list[tuple[PackageModule, str]] = []
        for module in remaining:
            response = _send(client, base, "PUT", "/v1/policies/" + quote(module.id), module.text)
            if response.status_code != 200:
                message = _opa_message(response, module)
                refused.append((module, f"HTTP {response.status_code}: {message}"))
        if len(refused) == len(remaining):
            module, reason = refused[0]
            others = f" (and {len(refused) - 1} more package(s))" if len(refused) > 1 else ""
            raise OpaRejected(
                f"OPA at {base} refused package {module.package} "
                f"({', '.join(module.files)}): {reason}{others}"
            )
        remaining = [module for module, _ in refused]


def _prune(client: httpx.Client, base: str, pushed: set[str]) -> None:
    """Deletes what earlier pushes left under ``push/`` for packages no longer in the
    folder; modules loaded any other way are not the push's to remove."""
    response = _send(client, base, "GET", "/v1/policies", None)
    if response.status_code != 200:
        return
    for policy in response.json().get("result") or []:
        policy_id = policy.get("id") if isinstance(policy, dict) else None
        if isinstance(policy_id, str) and policy_id.startswith("push/") and policy_id not in pushed:
            _send(client, base, "DELETE", "/v1/policies/" + quote(policy_id), None)


def _check_health(client: httpx.Client, base: str) -> None:
    try:
        response = client.get("/health")
    except httpx.HTTPError as exc:
        raise OpaAdminError(
            f"OPA at {base} is unreachable ({_describe(exc)}); is it running "
            "(`opa run --server`)? Give its address with --url"
        ) from None
    if response.status_code != 200:
        raise OpaAdminError(f"OPA at {base} is not healthy: HTTP {response.status_code}")


def _send(client: httpx.Client, base: str, method: str, path: str, body: Any) -> httpx.Response:
    try:
        if body is None:
            return client.request(method, path)
        if isinstance(body, str):
            return client.request(
                method, path, content=body.encode(), headers={"Content-Type": "text/plain"}
            )
        return client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        raise OpaAdminError(
            f"OPA at {base} failed during {method} {path}: {_describe(exc)}"
        ) from None


def _describe(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__


def _opa_message(response: httpx.Response, module: PackageModule | None = None) -> str:
    """OPA's error text: each detailed error with its place (in the original file when
    the module is a joined package), else the top-level message."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or "(no message)"
    if not isinstance(body, dict):
        return str(body)[:500]
    details = []
    for error in body.get("errors") or []:
        if not isinstance(error, dict):
            continue
        location = error.get("location") or {}
        row = location.get("row")
        if module is not None and isinstance(row, int):
            where = module.place(row) + ": "
        elif location:
            where = f"{location.get('file', '')}:{row or '?'}: "
        else:
            where = ""
        message = str(error.get("message", ""))
        if module is not None:
            message = module.translate(message)
        details.append(f"{where}{message}".strip())
    return "; ".join(details) if details else str(body.get("message") or "(no message)")
