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
        "operations",
        "offerings",
        "errors",
        "canonical",
        "redaction",
        "recording",
        "timestamps",
        "clock",
        "inline_budget",
        "logs",
        "metrics",
        "version",
        "config",
        "http_client",
        "telemetry",
    },
    {"tlog"},
    {"witness"},
    {"store"},
    {"identity"},
    {"audit"},
    {"policy"},
    {"upstreams", "approvals", "limits"},
    {"pipeline", "pipeline_tracing", "call_records", "lists", "relays"},
    {"executor"},
    {"workflows"},
    {"surfaces"},
    {
        "app",
        "components",
        "cli",
        "dev",
        "dev_state",
        "demo",
        "erasure_scope",
        "__main__",
        "__init__",
    },
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


# The modules that know which database they are on (docs/decisions/0014); everything
# else calls a `gateway.store.Dialect` hook. Migrations are frozen history with their
# own per-database DDL.
DIALECT_MODULES = {"db.py", "dialect.py", "dialect_sqlite.py", "dialect_postgres.py"}
DATABASE_NAMES = {"sqlite", "postgresql", "postgres"}
DRIVERS = {"sqlite3", "psycopg"}
# Not the gateway's database: a witness's own state file, kept with the standard
# library's sqlite3 so that a witness shares no storage code with the operator whose
# log it checks (docs/decisions/0023).
OWN_DATABASES = {("witness", "state.py")}


def _asks_which_database(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("paramstyle", "driver"):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "name"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "dialect"
        ):
            found.append(f"line {node.lineno}: .dialect.name")
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) and o.value in DATABASE_NAMES for o in operands):
                found.append(f"line {node.lineno}: compares with a database name")
        elif isinstance(node, ast.Import):
            found += [
                f"line {node.lineno}: import {a.name}" for a in node.names if a.name in DRIVERS
            ]
        elif isinstance(node, ast.ImportFrom) and node.module in DRIVERS:
            found.append(f"line {node.lineno}: from {node.module} import")
    return found


def test_only_the_store_dialects_ask_which_database_it_is() -> None:
    asking = []
    for path in sorted(GATEWAY.rglob("*.py")):
        relative = path.relative_to(GATEWAY)
        if "migrations" in relative.parts:
            continue
        if relative.parts[0] == "store" and relative.name in DIALECT_MODULES:
            continue
        if (relative.parts[0], relative.name) in OWN_DATABASES:
            continue
        asking += [
            f"{relative} {what}" for what in _asks_which_database(ast.parse(path.read_text()))
        ]
    assert asking == []
