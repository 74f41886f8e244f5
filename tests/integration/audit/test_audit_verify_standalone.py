"""An auditor's verify path stands alone: `gateway audit verify DIR` and `gateway audit
verify-receipt`, and the modules they use (`gateway.tlog`), import no SQLAlchemy and
nothing of the gateway's database or log-writing side (docs/decisions/0015).

The log is made by the real gateway (a SQLite database, the writer, the
checkpointer, the export); the checks run in a fresh interpreter, where nothing was
imported before them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from gateway.audit import AuditRecord, read_entries
from gateway.audit.consistency import consistency_between
from gateway.audit.export import export_log
from gateway.audit.receipt import receipt_for_entry
from gateway.audit.stored_checkpoints import read_checkpoint
from gateway.tlog.keys import AuditKey, format_keys
from tests.support.audit_logs import checkpointed_log

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

ORIGIN = "test.example/audit"
REPO = Path(__file__).resolve().parents[3]

# What must not be loaded: the database layer, and the log's own side.
FORBIDDEN = ("sqlalchemy", "alembic", "psycopg", "gateway.store", "gateway.audit")

_REPORT = """
import json, sys
loaded = sorted(
    m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in {forbidden!r})
)
print(json.dumps({{"result": result, "loaded": loaded}}))
"""


def _fresh(code: str) -> dict[str, object]:
    """Runs ``code`` (which sets ``result``) in a new interpreter; returns what it
    reports: the result and the forbidden modules it loaded."""
    program = code + _REPORT.format(forbidden=FORBIDDEN)
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture
async def evidence(engine: Engine, tmp_path: Path) -> dict[str, Path]:
    """An export, the keys file, a receipt with its entry's leaf, and a consistency
    proof from the first checkpoint (3) to the second (5): what an auditor is handed."""
    records = [AuditRecord("call.attempt", f"req{i}", {"i": i}) for i in range(5)]
    key = await checkpointed_log(engine, ORIGIN, [records[:3], records[3:]])
    export_log(engine, tmp_path / "export")
    (tmp_path / "keys").write_text(format_keys([AuditKey(key.verifier, 0, None)]))
    (tmp_path / "receipt").write_text(receipt_for_entry(engine, 3))
    (tmp_path / "leaf").write_bytes(read_entries(engine, start=3, stop=4)[0].leaf)
    (tmp_path / "consistency").write_text(consistency_between(engine, 3, 5).text)
    (tmp_path / "trusted").write_text(read_checkpoint(engine, 3).note)
    names = ("export", "keys", "receipt", "leaf", "consistency", "trusted")
    return {name: tmp_path / name for name in names}


async def test_the_verify_commands_import_no_database_layer(evidence: dict[str, Path]) -> None:
    paths = {name: str(path) for name, path in evidence.items()}
    report = _fresh(
        "from gateway.cli import main\n"
        f"paths = {paths!r}\n"
        'result = [main(["audit", "verify", paths["export"], "--keys", paths["keys"]]),\n'
        '          main(["audit", "verify-receipt", paths["receipt"],\n'
        '                "--keys", paths["keys"], "--leaf", paths["leaf"]]),\n'
        '          main(["audit", "verify", "--consistency", paths["consistency"],\n'
        '                "--keys", paths["keys"], "--trusted-checkpoint", paths["trusted"]])]\n'
    )
    assert report == {"result": [0, 0, 0], "loaded": []}


async def test_the_verifier_modules_import_no_database_layer(evidence: dict[str, Path]) -> None:
    paths = {name: str(path) for name, path in evidence.items()}
    report = _fresh(
        "from pathlib import Path\n"
        "from gateway.tlog import directory_source, parse_keys, verify_log, verify_receipt\n"
        f"paths = {paths!r}\n"
        'keys = parse_keys(Path(paths["keys"]).read_text())\n'
        'log = verify_log(directory_source(Path(paths["export"])), keys=keys)\n'
        'checkpoint = verify_receipt(Path(paths["receipt"]).read_bytes(),\n'
        '    Path(paths["leaf"]).read_bytes(), origin=keys[0].name, keys=keys)\n'
        "result = [log.ok, log.size, log.checkpoints, checkpoint.size]\n"
    )
    assert report == {"result": [True, 5, 2, 5], "loaded": []}


async def test_the_check_sees_a_database_import(evidence: dict[str, Path]) -> None:
    """The same report, from a program that does load the database layer: the check
    above would have noticed."""
    report = _fresh("import gateway.audit.export\nresult = None\n")
    assert "sqlalchemy" in report["loaded"] and "gateway.store" in report["loaded"]
