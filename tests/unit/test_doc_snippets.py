"""The doc test's reading of Markdown: marks, and what counts as an unmarked command."""

from __future__ import annotations

from pathlib import Path

from tests.support.doc_snippets import blocks_of, problems, synopses

DOC = """# A document

<!-- doc-test: skip because it needs an LLM -->
```python
agent.run()
```

```sh
gateway token --sub me
```

<!-- doc-test: synopsis -->
```text
gateway approvals list|show ID|deny ID --reason R  # held calls
```

- In a list:

  <!-- doc-test: file plan.yaml -->
  ```yaml
  steps: []
  ```

A paragraph between a mark and a block cuts the mark off:

<!-- doc-test: skip because nothing -->

Some text.

```text
$ gateway serve --dev
```

```
plain
```

```json
{"steps": [{"id": "a", "sleep_s": 1}]}
```
"""


def _blocks(tmp_path: Path):
    (tmp_path / "doc.md").write_text(DOC)
    (tmp_path / "plan.yaml").write_text("steps: []\n")
    return blocks_of(tmp_path / "doc.md", tmp_path)


def test_marks_belong_to_the_block_right_after_them(tmp_path: Path) -> None:
    skip, run, synopsis, file, text, _plain, _plan = _blocks(tmp_path)
    assert (skip.mark, skip.reason, skip.runs) == ("skip", "it needs an LLM", False)
    assert run.runs and run.text == "gateway token --sub me\n"
    assert synopsis.mark == "synopsis"
    assert (file.mark, file.file, file.text) == ("file", "plan.yaml", "steps: []\n")
    assert text.mark is None and text.where == "doc.md:30"


def test_unmarked_commands_plans_and_languages_are_problems(tmp_path: Path) -> None:
    blocks = _blocks(tmp_path)
    found = [p for block in blocks for p in problems(block, tmp_path)]
    assert found == [
        "doc.md:30: commands in a text block: make it sh, or mark it",
        "doc.md:34: a code block without a language (sh, text, json, …)",
        "doc.md:38: a plan: mark it (doc-test: file PATH, or skip because …)",
    ]
    (tmp_path / "plan.yaml").write_text("steps: [changed]\n")
    assert problems(blocks[3], tmp_path) == [
        "doc.md:20: differs from plan.yaml (keep them the same)"
    ]


def test_a_synopsis_names_commands_and_options(tmp_path: Path) -> None:
    (line,) = synopses(_blocks(tmp_path)[2])
    assert [" ".join(a) for a in line.alternatives] == [
        "approvals list",
        "approvals show",
        "approvals deny",
    ]
    assert line.options == ["--reason"]
