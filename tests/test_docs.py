"""The front page and the reference pages hold together: every relative link of README.md, ARCHITECTURE.md and
docs/*.md points to a file or folder that exists (and, where it names a heading of a Markdown page, to a heading that
exists), and README.md links to every page of docs/."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target): a Markdown link outside code. Code blocks are cut before matching; a link's text may hold `code`.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The page without its fenced code blocks (```...```), whose brackets are code, not links."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text()))


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (but - and _), spaces as -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {anchor(line.lstrip("#")) for line in prose(page.read_text()).splitlines() if line.startswith("#")}


def test_every_relative_link_points_to_something_that_exists():
    assert (ROOT / "docs").is_dir() and len(PAGES) > 3
    broken = []
    for page in PAGES:
        for target in links(page):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                continue
            path, _, fragment = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def test_the_readme_links_every_page_of_docs():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(ROOT / "README.md")}
    missing = [page.name for page in sorted((ROOT / "docs").glob("*.md")) if page.resolve() not in linked]
    assert not missing, f"docs/ pages that README.md's Documentation list does not link: {missing}"
