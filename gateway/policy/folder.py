"""A Rego policy folder, read once and compiled to a Wasm bundle by OPA itself.

``read_policy`` takes a snapshot of the folder's modules (``*_test.rego`` left out:
tests are not policy, and ``opa build -t wasm`` type-checks every module it is given)
and data documents (conformance cases left out: they are not policy data). The
snapshot's content hash is the revision; ``build_bundle`` writes exactly that
snapshot to a scratch folder and runs

    opa build -t wasm -e gateway/decision -e gateway/visible --revision <hash> <scratch>

so what is compiled is what was hashed, even while an editor saves over the folder.
The OPA binary is ``policy.opa_binary``, else ``$GATEWAY_OPA``, else ``opa`` on the
PATH (``make opa`` builds the pinned one into .tools/).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.canonical import jcs
from gateway.errors import PolicyLoadError
from gateway.policy.bundle import ENTRYPOINTS, merge_data

# opa build of the shipped policy takes ≈ 0.1 s; this only stops a wedged process.
BUILD_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class PolicySource:
    """A policy folder read once: what is compiled is exactly what was hashed."""

    path: Path
    modules: tuple[tuple[str, str], ...]  # (relative path, text)
    data: tuple[tuple[str, Any], ...]  # (relative path, document mounted at its folder)

    def revision(self, extra_data: dict[str, Any] | None = None) -> str:
        """The content hash recorded with every decision (modules, data, config data)."""
        digest = hashlib.sha256()
        for relative, text in self.modules:
            digest.update(b"module\0" + relative.encode() + b"\0" + text.encode() + b"\0")
        for relative, document in self.data:
            digest.update(b"data\0" + relative.encode() + b"\0" + jcs(document) + b"\0")
        if extra_data:
            digest.update(b"extra\0" + jcs(extra_data))
        return "sha256:" + digest.hexdigest()

    def merged_data(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for relative, document in self.data:
            merge_data(merged, document, source=f"policy data {relative}")
        return merged


def policy_files(path: Path) -> tuple[list[Path], list[Path]]:
    """The modules (tests excluded) and data documents of a policy folder."""
    if not path.is_dir():
        raise PolicyLoadError(f"policy folder {path} does not exist")
    modules = sorted(p for p in path.rglob("*.rego") if not p.name.endswith("_test.rego"))
    data = sorted(
        p for p in path.rglob("data.json") if "conformance" not in p.relative_to(path).parts
    )
    if not modules:
        raise PolicyLoadError(f"policy folder {path} holds no .rego modules")
    return modules, data


def read_policy(path: Path) -> PolicySource:
    """Reads a policy folder; raises `PolicyLoadError` naming the file and problem."""
    path = Path(path)
    module_files, data_files = policy_files(path)
    try:
        modules = tuple((m.relative_to(path).as_posix(), m.read_text()) for m in module_files)
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyLoadError(f"cannot read policy folder {path}: {exc}") from None
    data = []
    for data_file in data_files:
        relative = data_file.relative_to(path)
        try:
            document = json.loads(data_file.read_text())
        except json.JSONDecodeError as exc:
            raise PolicyLoadError(f"policy data {relative} is not valid JSON: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyLoadError(f"cannot read policy data {relative}: {exc}") from None
        # OPA mounts data files under their folder path; do the same so both engines
        # see the same document tree.
        for part in reversed(relative.parent.parts):
            document = {part: document}
        # Canonical form: the revision must not depend on formatting or key order.
        data.append((relative.as_posix(), json.loads(jcs(document))))
    source = PolicySource(path=path, modules=modules, data=tuple(data))
    source.merged_data()  # conflicting documents are refused here, naming the file
    return source


def opa_binary(configured: Path | None = None) -> str:
    """The OPA binary that compiles policy folders; raises `PolicyLoadError` saying how
    to get one."""
    candidate = (
        str(configured) if configured else os.environ.get("GATEWAY_OPA") or shutil.which("opa")
    )
    if not candidate or not Path(candidate).is_file():
        raise PolicyLoadError(
            "compiling a policy folder needs the OPA binary: run `make opa`, then set "
            "policy.opa_binary or GATEWAY_OPA to it (or put `opa` on the PATH); or serve a "
            "prebuilt bundle (policy.bundle)"
        )
    return candidate


def build_bundle(source: PolicySource, revision: str, *, opa: str) -> bytes:
    """The Wasm bundle OPA compiles from ``source``; raises `PolicyLoadError` with OPA's
    own message (file and line) when it does not compile.

    A policy written before ``gateway/visible`` existed is compiled with
    ``gateway/decision`` alone (lists then ask it once per item)."""
    with tempfile.TemporaryDirectory(prefix="gateway-policy-") as scratch:
        root = Path(scratch) / "policy"
        for relative, text in source.modules:
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        root.mkdir(exist_ok=True)
        (root / "data.json").write_text(json.dumps(source.merged_data()))
        output = Path(scratch) / "bundle.tar.gz"
        failure = _opa_build(opa, Path(scratch), output, revision, ENTRYPOINTS)
        if failure and f'entrypoint "{ENTRYPOINTS[1]}" does not refer' in failure:
            failure = _opa_build(opa, Path(scratch), output, revision, ENTRYPOINTS[:1])
        if failure is not None:
            # OPA names files by the scratch path ("policy/gateway/x.rego:3: …"): say
            # them as they are named in the folder.
            message = failure.replace(f"{root}/", "").replace(" policy/", " ")
            raise PolicyLoadError(
                f"policy folder {source.path} does not compile: {message.removeprefix('policy/')}"
            )
        return output.read_bytes()


def _opa_build(
    opa: str, scratch: Path, output: Path, revision: str, entrypoints: tuple[str, ...]
) -> str | None:
    """Runs ``opa build -t wasm``; None on success, else OPA's message."""
    command = [opa, "build", "-t", "wasm"]
    for entrypoint in entrypoints:
        command += ["-e", entrypoint]
    command += ["--revision", revision, "-o", str(output), "policy"]
    try:
        done = subprocess.run(
            command,
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PolicyLoadError(f"could not run {opa} to compile the policy: {exc}") from None
    if done.returncode == 0:
        return None
    return (done.stderr or done.stdout).strip() or f"opa build exited with {done.returncode}"
