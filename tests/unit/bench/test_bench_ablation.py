"""bench.ablation: its patches still apply to the gateway, and the pairing arithmetic."""

from __future__ import annotations

from pathlib import Path

from bench import ablation

MARKER = "bench/ablation"
PATCHED = {
    "no-policy": ["gateway/pipeline.py"],
    "no-durable-audit": ["gateway/store/dialect_sqlite.py"],
    "no-audit": ["gateway/audit/sequencer.py"],
}


def test_every_variant_s_patches_apply_and_touch_only_their_files(tmp_path: Path) -> None:
    names = list(ablation.VARIANTS)
    trees = dict(zip(names, ablation.make_trees(tmp_path, names), strict=True))
    every = {path for paths in PATCHED.values() for path in paths}
    for name, tree in trees.items():
        wanted = {path for patch in ablation.VARIANTS[name] for path in PATCHED[patch]}
        for path in every:
            assert (MARKER in (tree / path).read_text()) == (path in wanted), (name, path)
        assert (tree / ".venv").is_symlink() or not (ablation.REPO / ".venv").exists()


def test_paired_figures_are_ratios_and_savings_per_round() -> None:
    figures = {
        "0:full": {"cpu": [2.0, 4.0], "net": [1.5, 3.0]},
        "1:no-policy": {"cpu": [1.5, 3.0], "net": [1.0, 2.0]},
    }
    assert ablation.paired(figures, "0:full") == {
        "1:no-policy": {
            "cpu_ratio": [0.75, 0.75],
            "cpu_saved_ms": [0.5, 1.0],
            "net_ratio": [0.667, 0.667],
            "net_saved_ms": [0.5, 1.0],
        }
    }
