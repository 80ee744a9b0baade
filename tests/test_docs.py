"""The documentation: the mkdocs site builds in strict mode, and what it quotes is real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import copier
import pytest
import yaml
from conftest import REPO_ROOT
from template_history import render_working_tree
from variants import QUICK_VARIANT, answers

pytestmark = pytest.mark.quick

DOCS = REPO_ROOT / "docs"


def test_mkdocs_build_is_strictly_clean(tmp_path: Path) -> None:
    # Strict mode fails on broken links and anchors and on pages missing from the nav.
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "updating" / "index.html").is_file()


def nav_pages(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [page for item in node for page in nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in nav_pages(value)]
    return []


def test_every_page_is_in_the_nav() -> None:
    config = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text())
    listed = set(nav_pages(config["nav"]))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert sorted(pages - listed) == [], "add these pages to `nav` in mkdocs.yml"
    assert sorted(listed - pages) == [], "nav entries without a page"


def test_the_home_page_leads_to_every_page_in_the_nav() -> None:
    config = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text())
    pages = set(nav_pages(config["nav"])) - {"index.md"}
    index = (DOCS / "index.md").read_text()
    where_to_go = index.split("\n## Where to go\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^- \[[^]]+\]\(([^)#]+)\)", where_to_go, re.MULTILINE))
    assert sorted(pages - listed) == [], "add these pages to docs/index.md's Where to go"
    assert sorted(listed - pages) == [], "Where to go links pages missing from the nav"


def test_readme_links_exist() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    targets = re.findall(r"\]\((?!https?://|#)([^)#]+)", readme)
    assert targets, "README.md links to no documentation"
    missing = [t for t in targets if not (REPO_ROOT / t).exists()]
    assert missing == []


# Copier's messages that troubleshooting.md and updating.md quote: still Copier's wording?
COPIER_MESSAGES = [
    "Destination repository is dirty; cannot continue.",
    "Updating is only supported in git-tracked subprojects.",
    "Template not found",
    "Unknown revision:",
    "Local template must be a directory.",
    "Template uses potentially unsafe feature",
    "Downgrades are not supported.",
    "before updating",
    "after updating",
]


def test_troubleshooting_quotes_copiers_real_messages() -> None:
    page = (DOCS / "troubleshooting.md").read_text() + (DOCS / "updating.md").read_text()
    source = "\n".join(p.read_text() for p in Path(copier.__file__).parent.glob("*.py"))
    for message in COPIER_MESSAGES:
        assert message in page, f"the docs no longer explain {message!r}"
        assert message in source, f"copier no longer says {message!r}: update the docs"


def test_generated_readme_explains_updating_and_docker(tmp_path: Path) -> None:
    project = render_working_tree(tmp_path / "project", answers(QUICK_VARIANT))
    readme = (project / "README.md").read_text()
    assert "## Updating from the template" in readme
    assert "copier update --defaults" in readme
    assert "docker build" in readme
