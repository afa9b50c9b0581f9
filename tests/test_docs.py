"""The README and the guides: links that lead somewhere, figures that come from the benchmarks, and
only sources a reader can look up."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_lead_to_files(page):
    """Does every relative link of the page point to a file of the repository?"""
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_readme_is_a_short_entry():
    """Does the README give the two commands and point to the guides, in one screen or two?"""
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert len(text.splitlines()) <= 60


def test_performance_page_is_generated_from_the_benchmarks():
    """Is docs/performance.md exactly what benchmarks/report.py renders from benchmarks/results/?"""
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    assert (ROOT / "docs" / "performance.md").read_text() == report.render(), "run python benchmarks/report.py"


def test_sources_are_named_as_readers_can_find_them():
    """Is no file that ships or that a user reads citing the course's design documents by their
    internal numbers ("seed 004") instead of the real source?"""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    pattern = re.compile(r"[Ss]eeds? 00[0-9]|the seed's|seed homework")
    offenders = [
        f
        for f in files
        if not f.startswith("tests/") and (ROOT / f).is_file() and pattern.search((ROOT / f).read_text(errors="ignore"))
    ]
    assert not offenders, offenders


PACKAGES = [
    "autograder",
    "autograder.checks",
    "autograder.checks.hw1_vae",
    "autograder.checks.hw2_world_models",
    "autograder.submissions",
    "course_lib",
    "course_lib.pretrained",
    "course_lib.solutions",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_is_listed_in_its_packages_docstring(package):
    """Does the package's docstring give each of its modules a line of its own ("- :mod:`name`: ..."),
    so that a newcomer finds every room from the front door?"""
    module = importlib.import_module(package)
    listed = set(re.findall(r"^- :mod:`~?([\w.]+)`", module.__doc__, flags=re.MULTILINE))
    present = {info.name for info in pkgutil.iter_modules(module.__path__, prefix=f"{package}.")}
    assert present - listed == set(), f"{package}'s docstring does not list {sorted(present - listed)}"
    assert listed - present == set(), f"{package}'s docstring lists missing modules {sorted(listed - present)}"


def test_every_package_is_checked_for_its_list():
    """Is every package of the two libraries in :data:`PACKAGES`?"""
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for top in ("autograder", "course_lib")
        for path in (ROOT / top).rglob("__init__.py")
    }
    assert found == set(PACKAGES)
