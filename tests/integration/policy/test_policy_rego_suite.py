"""The Rego package's own tests, formatting and strict checks, run by the real OPA
binary that `make test-setup` installs (`GATEWAY_OPA`), on the policy folder as it is:
the commands a Rego author types first, with no flags (the conformance cases in it
load as data.conformance.<file>, which OPA merges)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

POLICIES = Path(__file__).resolve().parents[3] / "policies"
MIN_COVERAGE = 90.0


@pytest.fixture(scope="module")
def opa() -> str:
    path = os.environ.get("GATEWAY_OPA") or shutil.which("opa")
    if not path or not Path(path).exists():
        pytest.fail("OPA is not installed: run `make test-setup` (or set GATEWAY_OPA)")
    return path


def run(opa: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([opa, *args], capture_output=True, text=True, timeout=120, check=False)


def test_rego_unit_tests_pass_with_coverage(opa: str) -> None:
    result = run(opa, "test", str(POLICIES), "--coverage", "--format=json")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    report = json.loads(result.stdout)
    assert report["coverage"] >= MIN_COVERAGE, report["coverage"]


def test_rego_is_formatted(opa: str) -> None:
    result = run(opa, "fmt", "--list", "--fail", str(POLICIES))
    assert result.returncode == 0 and result.stdout == "", f"unformatted: {result.stdout}"


def test_rego_passes_strict_checks(opa: str) -> None:
    result = run(opa, "check", "--strict", str(POLICIES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rego_compiles_to_wasm_with_both_entrypoints(opa: str, tmp_path: Path) -> None:
    # What the embedded engine and a bundle build run (docs/policies.md, "Bundles").
    result = run(
        opa,
        "build",
        "-b",
        "-t",
        "wasm",
        "-e",
        "gateway/decision",
        "-e",
        "gateway/visible",
        "--ignore",
        "*_test.rego",
        "-o",
        str(tmp_path / "bundle.tar.gz"),
        str(POLICIES),
    )
    assert result.returncode == 0, result.stdout + result.stderr
