"""The README and docs/: every relative link points at a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_every_relative_link_of_the_readme_and_docs_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in _LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert len(PAGES) >= 5 and not broken, broken


def test_the_readme_links_every_study_in_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    studies = [p for p in PAGES[1:] if p.name.startswith("results-")]
    assert len(studies) == 3
    for page in [*studies, ROOT / "docs" / "ci-history.md"]:
        assert f"(docs/{page.name})" in readme, page.name
