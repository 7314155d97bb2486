"""Links between the project's Markdown files point at files that exist and,
with ``#anchor``, at a heading there (as GitHub names headings)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+?)\s*#*$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def markdown_files():
    """The project's own: not those of tools (.venv, .pytest_cache, node_modules) or demo data."""
    def ours(parts):
        return not any(part.startswith(".") or part in ("node_modules", "demo-data") for part in parts)
    return sorted(p for p in ROOT.rglob("*.md") if ours(p.relative_to(ROOT).parts))


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but hyphens
    left out, each space a hyphen (so "(`--physics`), and" gives "--physics-and")."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def anchors(path: Path) -> set:
    text = FENCE.sub("", path.read_text())
    return {anchor(h) for h in HEADING.findall(text)}


def links(path: Path):
    for target in LINK.findall(FENCE.sub("", path.read_text())):
        if not re.match(r"[a-z]+:", target):  # http:, mailto: ... are not ours to check
            yield target


def test_github_anchors():
    assert anchor("Independent physics series (`--physics`), and what they show") == \
        "independent-physics-series---physics-and-what-they-show"
    assert anchor("The axis' ends") == "the-axis-ends"


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_reach_their_file_and_heading(doc):
    broken = []
    for target in links(doc):
        file, _, fragment = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)
