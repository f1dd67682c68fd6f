"""Every relative link of the manual and the docs leads to a file and a heading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [
        REPO / "README.md",
        *(REPO / "docs").glob("*.md"),
        REPO / "bench" / "README.md",
        REPO / "src" / "visionops" / "tasks" / "README.md",
    ]
)
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+).*?\1")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks, with code spans blanked."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(CODE_SPAN.sub("", line))
    return lines


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings (`-1`, `-2` on repeats)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _headings(page):
        slug = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
        slug = re.sub(r"[^\w\- ]", "", slug).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(f"{slug}-{count}" if count else slug)
    return found


def _headings(page: Path) -> list[str]:
    """The text of each heading outside fenced code blocks."""
    headings, fenced = [], False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)):
            headings.append(m[1])
    return headings


def broken_links(page: Path) -> list[str]:
    """Each relative link of a page that leads nowhere, with the reason."""
    broken = []
    for line in _prose(page.read_text()):
        for target in LINK.findall(line):
            if SCHEME.match(target):
                continue  # a web address: not checked offline
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{target}: no file {path}")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{target}: no heading #{anchor} in {file.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_leads_to_a_file_and_heading(page: Path) -> None:
    assert broken_links(page) == []


def test_the_manual_links_every_page_of_the_docs() -> None:
    readme = "\n".join(_prose((REPO / "README.md").read_text()))
    linked = {(REPO / t.partition("#")[0]).resolve() for t in LINK.findall(readme)}
    unlinked = [p.name for p in (REPO / "docs").glob("*.md") if p not in linked]
    assert unlinked == []


def test_a_broken_link_or_anchor_is_reported(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Two words\n\n[ok](#two-words) [ok](page.md#title) "
        "[bad](missing.md) [bad](#three-words) `[code](not-a-link.md)`\n"
        "```\n[fenced](also-not.md)\n```\n"
    )
    assert broken_links(page) == [
        "missing.md: no file missing.md",
        "#three-words: no heading #three-words in page.md",
    ]
