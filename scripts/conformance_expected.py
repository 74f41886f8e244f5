#!/usr/bin/env python3
"""Regenerates the ``expected`` decisions of the policy conformance cases with OPA.

Not part of the gateway: a maintenance tool for whoever edits the policy or its cases.
Each case in ``policies/conformance/<name>.json`` (``{"<name>": [cases]}``) is

    {"name": "...", "input": {policy input v1}, "data": {optional overlay},
     "entrypoint": "gateway/visible" (optional; default gateway/decision),
     "expected": {the full decision, or {"visible": [names]}}}

For every case this script lays out a scratch policy folder (the modules of the policy
folder, without tests, and its data with the overlay merged over it: objects key by
key, anything else replaced), runs

    opa eval -d <scratch> -i <input> data.gateway.decision   (or .visible)

and writes what OPA answered into ``expected``. The gateway's conformance check then
holds the embedded engine (and an OPA server) to those answers.

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
import subprocess
import sys
import tempfile
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


def evaluate(opa: str, policies: Path, case: dict[str, Any], scratch: Path) -> Any:
    query = "data." + case.get("entrypoint", "gateway/decision").replace("/", ".")
    folder = scratch / "policy"
    if folder.exists():
        shutil.rmtree(folder)
    for module in policies.rglob("*.rego"):
        if module.name.endswith("_test.rego"):
            continue
        target = folder / module.relative_to(policies)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(module, target)
    data = overlay(policy_data(policies), case.get("data") or {})
    (folder / "data.json").write_text(json.dumps(data))
    input_file = scratch / "input.json"
    input_file.write_text(json.dumps(case["input"]))
    result = subprocess.run(
        [opa, "eval", "--format=json", "-d", str(folder), "-i", str(input_file), query],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"OPA failed on case {case['name']!r}: {result.stdout}{result.stderr}")
    answer = json.loads(result.stdout)
    return answer["result"][0]["expressions"][0]["value"]


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
    stale = 0
    with tempfile.TemporaryDirectory() as scratch:
        for path in files:
            document = json.loads(path.read_text())
            # Keyed by the file's name, so that OPA can load the folder as data.
            key = path.stem if path.stem in document else "cases"
            cases = document[key]
            names = [case["name"] for case in cases]
            if len(set(names)) != len(names):
                raise SystemExit(f"{path}: case names must be unique")
            for case in cases:
                expected = evaluate(args.opa, args.policies, case, Path(scratch))
                if case.get("expected") != expected:
                    stale += 1
                    print(f"{path.name}: {case['name']}: expected decision changed")
                    case["expected"] = expected
            if not args.check:
                path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
            print(f"{path.name}: {len(cases)} cases")
    if args.check and stale:
        print(f"{stale} case(s) differ from OPA; rerun without --check to update them")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
