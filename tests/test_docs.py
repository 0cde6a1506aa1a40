"""The README is a short entry and the docs site builds: every page in the nav, every link resolving
(``mkdocs build --strict``), and the README's set-up commands the very lines CI runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

DOCS = ROOT / "docs"
README_MAX_LINES = 250


def _nav_pages(nav: list) -> list[str]:
    pages = []
    for entry in nav:
        items = entry.values() if isinstance(entry, dict) else [entry]
        for item in items:
            pages += _nav_pages(item) if isinstance(item, list) else [item]
    return pages


def _setup_commands(markdown: str) -> list[str]:
    """The shell lines of the bash blocks under the set-up heading."""
    section = markdown.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [line for block in re.findall(r"```bash\n(.*?)```", section, re.S) for line in block.splitlines()]


def _slug(heading: str) -> str:
    """MkDocs' and GitHub's anchor for a heading (the subset our headings use)."""
    text = re.sub(r"[`*]", "", heading).strip().lower()
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", text))


def test_the_readme_is_an_entry_of_at_most_250_lines():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move detail into docs/"


def test_every_docs_page_is_in_the_nav():
    nav = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages
    assert len(nav) == len(set(nav)), "a page is in the nav twice"


def test_the_readme_set_up_commands_are_the_lines_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    readme = _setup_commands((ROOT / "README.md").read_text())
    assert len(readme) == 2, readme
    for line in readme:
        assert line in ci, f"README set-up command not run by .ci/run: {line}"
    assert _setup_commands((DOCS / "getting-started.md").read_text()) == readme


def test_the_readme_links_resolve():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        if link.startswith("http"):
            continue
        path, _, anchor = link.partition("#")
        target = ROOT / path if path else ROOT / "README.md"
        assert target.exists(), link
        if anchor and target.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", target.read_text(), re.M)
            assert anchor in {_slug(h) for h in headings}, link


def test_the_docs_build_in_strict_mode(tmp_path):
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI must install the docs extra (pip install -e '.[test,docs]')")
        pytest.skip("needs the docs extra: pip install -e '.[test,docs]'")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "results" / "index.html").exists()
