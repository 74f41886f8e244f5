"""The client examples docs/agents.md shows (docs/examples/agents/), for the tests that
run them: Python ones imported as modules, Node ones copied beside the Node packages
of tests/peers (Node resolves a package from the importing file's folder up)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

from tests.support.conformance import PEERS
from tests.support.processes import REPO

EXAMPLES = REPO / "docs" / "examples" / "agents"


def load(name: str) -> ModuleType:
    """``docs/examples/agents/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"agent_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def runnable_node_example(name: str, directory: Path) -> Path:
    """``docs/examples/agents/<name>`` copied into ``directory``, beside a link to the
    Node packages tests/peers installed, so that it runs as a user's copy would."""
    directory.mkdir(parents=True, exist_ok=True)
    modules = directory / "node_modules"
    if not modules.exists():
        modules.symlink_to(PEERS, target_is_directory=True)
    target = directory / name
    shutil.copyfile(EXAMPLES / name, target)
    return target
