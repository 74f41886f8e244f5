"""The key of a remembered conformance pass (gateway.policy.conformance_memo): any
change to what decides a verdict, installed distributions included, is another key."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gateway.policy.conformance import ConformanceCase
from gateway.policy.conformance_memo import ConformanceMemo

CASES = [
    ConformanceCase(
        name="c", file="cases.json", input={"action": "tools/call"}, data=None, expected={}
    )
]


def key(memo: ConformanceMemo, revision: str = "sha256:r") -> str | None:
    return memo.key(revision=revision, cases=CASES, engine="embedded")


def test_an_upgraded_added_or_removed_distribution_is_another_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "somelib-1.0.dist-info").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    memo = ConformanceMemo(tmp_path / "memo")
    before = key(memo)
    assert before is not None and key(memo) == before  # stable while nothing changes

    (site / "somelib-1.0.dist-info").rename(site / "somelib-1.1.dist-info")
    upgraded = key(memo)
    (site / "otherlib-2.0.dist-info").mkdir()
    added = key(memo)
    (site / "somelib-1.1.dist-info").rmdir()
    removed = key(memo)
    assert len({before, upgraded, added, removed}) == 4


def test_another_policy_revision_is_another_key(tmp_path: Path) -> None:
    memo = ConformanceMemo(tmp_path)
    assert key(memo, "sha256:a") != key(memo, "sha256:b")
