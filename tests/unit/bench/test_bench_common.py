"""bench.common.write_result: a result already recorded is never overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import common


def test_a_second_result_of_the_day_is_written_beside_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    paths = [common.write_result("comparison", {"run": i}, f"# run {i}\n") for i in range(3)]
    assert len(set(paths)) == 3
    assert paths[1].name == paths[0].name.replace(".md", "-2.md")
    for i, path in enumerate(paths):
        assert path.read_text() == f"# run {i}\n"
        assert json.loads(path.with_suffix(".json").read_text()) == {"run": i}
