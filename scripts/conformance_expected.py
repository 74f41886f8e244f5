#!/usr/bin/env python3
"""Regenerates the ``expected`` decisions of the policy conformance cases with OPA.

Not part of the gateway: a maintenance tool for whoever edits the policy or its cases.
Each case in ``policies/conformance/<name>.json`` (``{"<name>": [cases]}``) is

    {"name": "...", "input": {policy input v1}, "data": {optional overlay},
     "entrypoint": "gateway/visible" (optional; default gateway/decision),
     "expected": {the full decision, or {"visible": [names]}}}

This script starts one OPA server on the modules of the policy folder (without tests),
and for every case puts the folder's data with the case's overlay merged over it
(objects key by key, anything else replaced) as OPA's data (``PUT /v1/data``, only when
it changed), asks

    POST /v1/data/gateway/decision {"input": <input>}   (or /v1/data/gateway/visible)

and writes what OPA answered into ``expected``: the answer of ``opa eval -d <folder>
-i <input>``, from one compilation of the policy instead of one per case. The gateway's
conformance check then holds the embedded engine (and an OPA server) to those answers.

    python scripts/conformance_expected.py                # rewrite every file
    python scripts/conformance_expected.py --check        # exit 1 if any differs
    python scripts/conformance_expected.py policies/conformance/plans.json

OPA: --opa, else $GATEWAY_OPA, else `opa` on PATH (`make opa` installs one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"


def overlay(base: Any, over: Any) -> Any:
    """``over`` merged over ``base``: objects key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = overlay(base[key], value) if key in base else value
        return merged
    return over


def policy_data(policies: Path) -> dict[str, Any]:
    """The data documents of the policy folder, mounted at their folders as OPA does."""
    merged: dict[str, Any] = {}
    for path in sorted(policies.rglob("*.json")):
        relative = path.relative_to(policies)
        if "conformance" in relative.parts:
            continue
        document = json.loads(path.read_text())
        for part in reversed(relative.parent.parts):
            document = {part: document}
        merged = overlay(merged, document)
    return merged


class Opa:
    """One OPA server on ``policies``' modules (tests left out), for the whole run."""

    def __init__(self, opa: str, policies: Path, scratch: Path) -> None:
        folder = scratch / "policy"
        for module in policies.rglob("*.rego"):
            if not module.name.endswith("_test.rego"):
                target = folder / module.relative_to(policies)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(module, target)
        with socket.socket() as probe:  # a free loopback port for the server
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._log = (scratch / "opa.log").open("w")
        self._server = subprocess.Popen(
            [opa, "run", "--server", "--addr", f"127.0.0.1:{port}", str(folder)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._data: Any = None
        deadline = time.monotonic() + 60
        while not self._ready():
            if self._server.poll() is not None or time.monotonic() > deadline:
                self.close()
                log = (scratch / "opa.log").read_text()
                raise SystemExit(f"OPA did not start on {folder}:\n{log}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=5) as answer:
                return answer.status == 200
        except OSError:
            return False

    def _call(self, method: str, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                text = answer.read()
        except urllib.error.HTTPError as error:
            raise SystemExit(f"OPA refused {method} {path}: {error.read().decode()}") from None
        return json.loads(text) if text else None

    def evaluate(self, data: Any, case: dict[str, Any]) -> Any:
        if data != self._data:
            self._call("PUT", "/v1/data", data)
            self._data = data
        entrypoint = case.get("entrypoint", "gateway/decision")
        answer = self._call("POST", f"/v1/data/{entrypoint}", {"input": case["input"]})
        if "result" not in answer:
            raise SystemExit(f"OPA has no {entrypoint} for case {case['name']!r}: {answer}")
        return answer["result"]

    def close(self) -> None:
        self._server.terminate()
        self._server.wait(10)
        self._log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="case files (default: all)")
    parser.add_argument("--opa", default=os.environ.get("GATEWAY_OPA") or shutil.which("opa"))
    parser.add_argument("--policies", type=Path, default=POLICIES)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    if not args.opa:
        parser.error("no OPA binary: pass --opa, set GATEWAY_OPA or run `make opa`")
    files = args.files or sorted((args.policies / "conformance").glob("*.json"))
    base = policy_data(args.policies)
    with tempfile.TemporaryDirectory() as scratch:
        opa = Opa(args.opa, args.policies, Path(scratch))
        try:
            stale = _expected(opa, base, files, check=args.check)
        finally:
            opa.close()
    if args.check and stale:
        print(f"{stale} case(s) differ from OPA; rerun without --check to update them")
        return 1
    return 0


def _expected(opa: Opa, base: dict[str, Any], files: list[Path], *, check: bool) -> int:
    """Each case's ``expected`` compared with OPA's answer (and, unless ``check``,
    rewritten); how many differed."""
    stale = 0
    for path in files:
        document = json.loads(path.read_text())
        # Keyed by the file's name, so that OPA can load the folder as data.
        key = path.stem if path.stem in document else "cases"
        cases = document[key]
        names = [case["name"] for case in cases]
        if len(set(names)) != len(names):
            raise SystemExit(f"{path}: case names must be unique")
        for case in cases:
            expected = opa.evaluate(overlay(base, case.get("data") or {}), case)
            if case.get("expected") != expected:
                stale += 1
                print(f"{path.name}: {case['name']}: expected decision changed")
                case["expected"] = expected
        if not check:
            path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        print(f"{path.name}: {len(cases)} cases")
    return stale


if __name__ == "__main__":
    sys.exit(main())
