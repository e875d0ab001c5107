"""Every relative link and anchor in the docs resolves: the file or directory exists, and `#anchor` names a
heading of the target page under GitHub's slug rules (what github.com renders), in README.md, docs/*.md,
helm/cacerts-sync/README.md and jobs/README.md.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "helm/cacerts-sync/README.md", ROOT / "jobs/README.md"])

FENCE = re.compile(r"^(```|~~~)")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans blanked (links there are examples)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(re.sub(r"`[^`]*`", "``", line))
    return out


def slug(heading: str) -> str:
    """GitHub's heading anchor (github-slugger): the rendered text, lowercased, with punctuation other than
    `-` and `_` removed and each space turned into `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images -> their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.replace("`", "")
    text = re.sub(r"(\*\*|__|\*|_)(\S.*?\S|\S)\1", r"\2", text)  # emphasis markers
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor GitHub renders for a page: headings (repeats get -1, -2, ...) and explicit HTML anchors."""
    text = page.read_text(encoding="utf-8")
    found: set[str] = set()
    seen: Counter[str] = Counter()
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if fenced:
            continue
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
            seen[base] += 1
        found.update(HTML_ANCHOR.findall(line))
    return found


def links(page: Path) -> list[tuple[int, str]]:
    out = []
    for number, line in enumerate(prose_lines(page.read_text(encoding="utf-8")), 1):
        for target in INLINE_LINK.findall(line) + REFERENCE_DEF.findall(line):
            out.append((number, target))
    return out


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target)) or target.startswith("//")


def broken(page: Path) -> list[str]:
    problems = []
    for _, target in links(page):
        if is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not resolved.exists():
            problems.append(f"{target}: {resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved} does not exist")
            continue
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{target}: points outside the repository")
            continue
        if anchor:
            if resolved.suffix != ".md":
                problems.append(f"{target}: an anchor into a non-Markdown file")
            elif unquote(anchor) not in anchors(resolved):
                problems.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken(page) == []


def test_the_pages_link_to_each_other() -> None:
    # The check sees links at all: the README's map reaches every docs page.
    readme_targets = {t.partition("#")[0] for _, t in links(ROOT / "README.md")}
    for doc in (ROOT / "docs").glob("*.md"):
        assert f"docs/{doc.name}" in readme_targets, f"{doc.name} is not in the README's map"


@pytest.mark.parametrize(
    "heading,expected",
    [
        ("Install on AKS with workload identity (Helm)", "install-on-aks-with-workload-identity-helm"),
        ("`cacerts` created after istiod", "cacerts-created-after-istiod"),
        ("Exit code 3: invalid material", "exit-code-3-invalid-material"),
        ("Rotating the root, step by step", "rotating-the-root-step-by-step"),
        ("What **not** to do — ever", "what-not-to-do--ever"),
        ("snake_case and [a link](x.md)", "snake_case-and-a-link"),
    ],
)
def test_slugs_follow_github(heading: str, expected: str) -> None:
    assert slug(heading) == expected


def test_a_broken_link_and_a_missing_anchor_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    (tmp_path / "a.md").write_text("# Title\n\n## Same\n\n## Same\n\n[ok](b.md#other) [ok](#same-1) [ok](#title)\n")
    (tmp_path / "b.md").write_text("# Other\n\n```sh\n# not a heading\n```\n")
    assert broken(tmp_path / "a.md") == []
    (tmp_path / "c.md").write_text("[x](missing.md) [y](b.md#not-a-heading) [z](#same-2) `[code](nowhere.md)`\n")
    problems = broken(tmp_path / "c.md")
    assert len(problems) == 3, problems
    assert "missing.md" in problems[0] and "#not-a-heading" in problems[1] and "#same-2" in problems[2]
