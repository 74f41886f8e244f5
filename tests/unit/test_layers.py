"""The folder layout shows the architecture: a module imports only from its own layer
or below (docs/architecture.md §3). An import upward fails here, naming it."""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"

# docs/architecture.md §3, lowest first. Modules of one layer may import each other.
LAYERS: list[set[str]] = [
    {
        "types",
        "offerings",
        "errors",
        "canonical",
        "redaction",
        "recording",
        "timestamps",
        "logs",
        "metrics",
        "version",
        "config",
        "http_client",
    },
    {"store"},
    {"identity"},
    {"audit"},
    {"policy"},
    {"upstreams", "approvals"},
    {"pipeline", "lists"},
    {"executor"},
    {"surfaces"},
    {"app", "cli", "dev", "demo", "erasure_scope", "__main__", "__init__"},
]


def _layer_of(unit: str) -> int:
    for level, units in enumerate(LAYERS):
        if unit in units:
            return level
    raise AssertionError(f"gateway/{unit} is in no layer of docs/architecture.md §3")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gateway."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("gateway.")}
    return found


def test_no_module_imports_a_higher_layer() -> None:
    upward = []
    for path in sorted(GATEWAY.rglob("*.py")):
        relative = path.relative_to(GATEWAY)
        unit = relative.parts[0].removesuffix(".py")
        if "migrations" in relative.parts:
            continue  # Alembic's files: they import the tables, nothing else
        for target in _imports(path) - {unit}:
            if _layer_of(target) > _layer_of(unit):
                upward.append(f"{relative} imports gateway.{target}")
    assert upward == []


def test_every_package_says_what_it_is_responsible_for() -> None:
    for package in sorted(p for p in GATEWAY.iterdir() if p.is_dir() and p.name != "__pycache__"):
        if package.name in ("default_policies",):
            continue
        init = package / "__init__.py"
        assert init.is_file(), f"gateway/{package.name} has no __init__.py"
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring and len(docstring) > 80, f"gateway/{package.name}/__init__.py"
