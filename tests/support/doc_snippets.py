"""The code blocks of README.md and docs/*.md, and what the doc test does with each.

The conventions (also in README.md, "Development"):

- Every fenced block names its language. ``sh`` blocks are commands: the doc test
  runs them, in order, one bash session per document (what one block exports, the
  next one has), against a dev gateway, and each must succeed.
- An HTML comment right before a block (blank lines between are fine) says otherwise:

  ``<!-- doc-test: skip because REASON -->``
      cannot run here (an LLM, Claude Code, an external IdP, Kubernetes, a
      long-running server in another terminal, …): not run, and listed with its
      reason in every run of the test.
  ``<!-- doc-test: synopsis -->``
      a usage synopsis (``[--json]``, ``apr_…``): not run, but every ``gateway …``
      line is checked against the command line: the command exists and each
      ``--option`` it names is one of its options.
  ``<!-- doc-test: file PATH -->``
      the block is the content of PATH in the repository (a plan the commands use),
      checked byte for byte.

- A block in any other language that holds commands (lines starting with
  ``gateway``, ``.venv/bin/``, ``curl``, ``make``, ``$OPA``, ``opa``, ``psql``,
  ``kubectl``, ``helm`` or ``$ ``), or a YAML or JSON plan (a mapping with
  ``steps``), must carry one of these marks: nothing runnable is left out silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[A-Za-z0-9_+-]*)\s*$")
MARK = re.compile(
    r"<!--\s*doc-test:\s*(?:(?P<skip>skip because (?P<reason>.+?))|(?P<synopsis>synopsis)"
    r"|file (?P<file>\S+))\s*-->"
)
COMMAND_LINE = re.compile(
    r"^\s*(\$ )?(gateway|\.venv/bin/\S+|curl|make|\$OPA|opa|psql|kubectl|helm)(\s|$)"
)
RUNNABLE = {"sh"}


@dataclass(frozen=True)
class Block:
    document: str  # path relative to the repository
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    mark: str | None = None  # "skip", "synopsis", "file" or None
    reason: str | None = None
    file: str | None = None

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUNNABLE and self.mark is None


# The blocks marked skip, filled by tests/e2e/test_docs.py when it is collected and
# listed at the end of the run (tests/e2e/conftest.py).
NOT_RUN: list[Block] = []


def documents(repo: Path) -> list[Path]:
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]


def blocks_of(path: Path, repo: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    pending: re.Match[str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        if mark := MARK.search(line):
            pending = mark
        fence = FENCE.match(line)
        if fence is None:
            if line.strip() and not MARK.search(line):
                pending = None  # a mark belongs to the block right after it
            index += 1
            continue
        indent = fence.group("indent")
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        body = "\n".join(_dedent(x, indent) for x in lines[index + 1 : end]) + "\n"
        found.append(
            Block(
                document=path.relative_to(repo).as_posix(),
                line=index + 1,
                lang=fence.group("lang"),
                text=body,
                mark=_kind(pending),
                reason=pending.group("reason") if pending and pending.group("skip") else None,
                file=pending.group("file") if pending else None,
            )
        )
        pending = None
        index = end + 1
    return found


def _kind(mark: re.Match[str] | None) -> str | None:
    if mark is None:
        return None
    if mark.group("skip"):
        return "skip"
    return "synopsis" if mark.group("synopsis") else "file"


def _dedent(line: str, indent: str) -> str:
    return line[len(indent) :] if line.startswith(indent) else line.lstrip()


def problems(block: Block, repo: Path) -> list[str]:
    """What is wrong with how a block is marked (empty when it is fine)."""
    if not block.lang:
        return [f"{block.where}: a code block without a language (sh, text, json, …)"]
    if block.mark == "file":
        assert block.file is not None
        target = repo / block.file
        if not target.is_file():
            return [f"{block.where}: doc-test file {block.file} does not exist"]
        if target.read_text(encoding="utf-8") != block.text:
            return [f"{block.where}: differs from {block.file} (keep them the same)"]
        return []
    if block.mark is not None or block.lang in RUNNABLE:
        return []
    if any(COMMAND_LINE.match(line) for line in block.text.splitlines()):
        return [f"{block.where}: commands in a {block.lang} block: make it sh, or mark it"]
    if _is_plan(block):
        return [f"{block.where}: a plan: mark it (doc-test: file PATH, or skip because …)"]
    return []


def _is_plan(block: Block) -> bool:
    if block.lang not in ("yaml", "json"):
        return False
    try:
        data = yaml.safe_load(block.text) if block.lang == "yaml" else json.loads(block.text)
    except (yaml.YAMLError, ValueError):
        return False
    return isinstance(data, dict) and "steps" in data


@dataclass(frozen=True)
class Synopsis:
    """One `gateway …` line of a synopsis: the command words and the options named."""

    where: str
    alternatives: list[list[str]]  # each a command path, e.g. ["approvals", "show"]
    options: list[str]


def synopses(block: Block) -> list[Synopsis]:
    found = []
    for text in block.text.replace("\\\n", " ").splitlines():  # continued lines
        words = text.split("#")[0].split()
        if words and words[0] in ("gateway", ".venv/bin/gateway"):
            found.append(_synopsis(block.where, words[1:]))
    return found


WORD = re.compile(r"[a-z][a-z-]*")


def _synopsis(where: str, words: list[str]) -> Synopsis:
    """``runs submit PLAN|show ID|list`` → runs submit, runs show, runs list;
    ``approvals list|show ID|deny ID --reason R`` → approvals list, show, deny and the
    option --reason; ``tools approve NAME [--hash H]`` → tools approve, --hash."""
    head = []
    for word in words:
        if word.startswith(("-", "[")):
            break
        head.append(word)
    path: list[str] = []
    alternatives: list[str] = []
    for word in head:
        parts = word.split("|")
        if len(parts) == 1 and not alternatives and WORD.fullmatch(word):
            path.append(word)
            continue
        if len(parts) == 1:
            break  # a placeholder: PLAN, ID, up__echo
        if not alternatives:
            if WORD.fullmatch(parts[0]):
                alternatives.append(parts[0])
            elif path:
                alternatives.append(path.pop())  # `submit PLAN|show`: submit is one
        alternatives += [p for p in parts[1:] if WORD.fullmatch(p)]
    paths = [[*path, a] for a in alternatives] or [path]
    options = sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", " ".join(words))))
    return Synopsis(where, paths, options)
