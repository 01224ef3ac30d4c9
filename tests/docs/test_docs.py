"""The documentation stays true to the repository: links resolve, quoted commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

# [text](target) and ![alt](target); the target ends at whitespace or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_SRC = re.compile(r"""<(?:img|a)\s[^>]*?(?:src|href)=["']([^"']+)["']""", re.IGNORECASE)
FENCE = re.compile(r"^\s*(```|~~~)")
MAKE = re.compile(r"^make\s+([A-Za-z0-9_-]+)")
MODULE = re.compile(r"^(?:uv run\s+(?:--\S+\s+)*)?python3?\s+-m\s+([A-Za-z_][\w.]*)")
MAKE_TARGET = re.compile(r"^([A-Za-z0-9_-]+)\s*:(?!=)", re.MULTILINE)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def local_links(text: str) -> list[str]:
    """Link and image targets that point into the repository (no URLs, no bare anchors)."""
    targets = LINK.findall(text) + HTML_SRC.findall(text)
    return [
        t
        for t in targets
        if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE) and not t.startswith("#")
    ]


def fenced_lines(text: str) -> list[str]:
    """Lines inside fenced code blocks, stripped; `$ ` prompts removed."""
    lines, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        if inside:
            lines.append(line.strip().removeprefix("$ ").strip())
    return lines


def quoted_commands(text: str) -> tuple[list[str], list[str]]:
    """`make` targets and `python -m` modules quoted in fenced blocks."""
    targets, modules = [], []
    for line in fenced_lines(text):
        if match := MAKE.match(line):
            targets.append(match.group(1))
        elif match := MODULE.match(line):
            modules.append(match.group(1))
    return targets, modules


def module_exists(module: str) -> bool:
    """True when `module` is a module or package of this repository."""
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


@pytest.fixture(scope="module")
def make_targets() -> set[str]:
    """Targets defined in the Makefile."""
    return set(MAKE_TARGET.findall((ROOT / "Makefile").read_text(encoding="utf-8")))


def test_docs_are_found() -> None:
    """The README and the docs folder's pages are all collected."""
    names = {_rel(p) for p in DOCS}
    assert {"README.md", "docs/presentation.md", "docs/security.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_docs_local_links_resolve(doc: Path) -> None:
    """Every relative link and image in a page points at a file or folder that exists."""
    text = doc.read_text(encoding="utf-8")
    missing = [
        target
        for target in local_links(text)
        if not (doc.parent / target.split("#")[0].split("?")[0]).exists()
    ]
    assert not missing, f"{_rel(doc)}: broken links {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_docs_quoted_commands_exist(doc: Path, make_targets: set[str]) -> None:
    """`make X` targets are in the Makefile; `python -m M` modules are files in the repo."""
    targets, modules = quoted_commands(doc.read_text(encoding="utf-8"))
    unknown_targets = sorted(set(targets) - make_targets)
    unknown_modules = sorted({m for m in modules if not module_exists(m)})
    assert not unknown_targets, f"{_rel(doc)}: make targets not in the Makefile {unknown_targets}"
    assert not unknown_modules, f"{_rel(doc)}: modules not in the repository {unknown_modules}"


def test_presentation_is_a_marp_deck() -> None:
    """The deck has Marp front matter and 15-25 slides."""
    text = (ROOT / "docs" / "presentation.md").read_text(encoding="utf-8")
    front, _, body = text.removeprefix("---\n").partition("\n---\n")
    assert text.startswith("---\n"), "no front matter"
    for key in ("marp: true", "theme: default", "paginate: true"):
        assert re.search(rf"^{re.escape(key)}\s*$", front, re.MULTILINE), key
    # Slides are separated by `---` lines outside code blocks.
    separators, inside = 0, False
    for line in body.splitlines():
        if FENCE.match(line):
            inside = not inside
        elif not inside and line.strip() == "---":
            separators += 1
    assert 15 <= separators + 1 <= 25, f"{separators + 1} slides"


@pytest.mark.parametrize(
    ("text", "targets", "modules"),
    [
        ("```bash\nmake run   # x\n$ make test\n```", ["run", "test"], []),
        (
            "```\nuv run python -m training.train --rows 5\npython -m load.bench\n```",
            [],
            ["training.train", "load.bench"],
        ),
        (
            "make run\n```\nuv run --no-sync python -m monitoring.drift\n```",
            [],
            ["monitoring.drift"],
        ),
    ],
)
def test_quoted_commands_parsing(text: str, targets: list[str], modules: list[str]) -> None:
    """Only fenced lines count; `uv run [--flags] python -m` and `make` are recognised."""
    assert quoted_commands(text) == (targets, modules)


def test_local_links_skip_urls_and_anchors() -> None:
    """URLs and bare anchors are not checked; relative paths and images are."""
    text = "[a](https://x.y) [b](#top) ![c](diagrams/a.svg) [d](../README.md#x) <img src='e.png'>"
    assert local_links(text) == ["diagrams/a.svg", "../README.md#x", "e.png"]
