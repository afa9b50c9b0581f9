"""The pins of pyproject.toml and environment.yml agree, and the package imports."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# "name[extra,...]==1.2.3" (pip) or "name=1.2.3" (conda); extras are ignored.
PIN = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*==?\s*(?P<version>[^\s;#]+)\s*$"
)


def parse_pin(spec: str) -> tuple[str, str] | None:
    """``(lower-case name, version)`` of a pinned requirement, or None when it is not pinned."""
    match = PIN.match(spec)
    if match is None:
        return None
    return match["name"].lower().replace("_", "-"), match["version"]


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def pyproject_pins(include_dev: bool = True) -> dict[str, str]:
    project = pyproject()["project"]
    specs = list(project["dependencies"])
    if include_dev:
        for group in project.get("optional-dependencies", {}).values():
            specs += group
    pins = {}
    for spec in specs:
        pin = parse_pin(spec)
        assert pin is not None, f"pyproject.toml dependency {spec!r} is not pinned with =="
        pins[pin[0]] = pin[1]
    return pins


def environment_lines() -> list[str]:
    """The ``- item`` lines of environment.yml, without the dash, comments stripped."""
    items = []
    for raw in (ROOT / "environment.yml").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("- "):
            items.append(line[2:].strip())
    return items


def environment_pins() -> dict[str, str]:
    pins = {}
    for item in environment_lines():
        if item.endswith(":"):  # "- pip:" opens the pip section
            continue
        pin = parse_pin(item)
        if pin is not None:
            pins[pin[0]] = pin[1]
    return pins


def test_parse_pin():
    """Are conda pins, pip pins and extras parsed the way the other tests assume?"""
    assert parse_pin("numpy=2.4.6") == ("numpy", "2.4.6")
    assert parse_pin("torch==2.13.0") == ("torch", "2.13.0")
    assert parse_pin("gymnasium[classic-control,box2d]==1.4.0") == ("gymnasium", "1.4.0")
    assert parse_pin("Pillow==13.0.0") == ("pillow", "13.0.0")
    assert parse_pin("pip") is None
    assert parse_pin("numpy>=2") is None


def test_pyproject_pins_every_dependency():
    """Is every dependency in pyproject.toml pinned to one exact version?"""
    pins = pyproject_pins()
    assert {"torch", "gymnasium", "numpy", "nbgrader", "pytest"} <= set(pins)


def test_shared_pins_agree():
    """Does every package pinned in both files have the same version in both?"""
    ours, theirs = pyproject_pins(), environment_pins()
    shared = set(ours) & set(theirs)
    assert shared, "no package is pinned in both files"
    mismatched = {name: (ours[name], theirs[name]) for name in shared if ours[name] != theirs[name]}
    assert not mismatched, f"pyproject.toml vs environment.yml: {mismatched}"


@pytest.mark.parametrize("name", sorted(pyproject_pins(include_dev=False)))
def test_runtime_pin_is_in_environment(name):
    """Is each runtime dependency of pyproject.toml pinned in environment.yml too?"""
    assert name in environment_pins(), f"{name} is pinned in pyproject.toml, not environment.yml"


def test_gymnasium_extras_in_environment():
    """Does environment.yml install gymnasium with the classic-control and box2d extras?"""
    items = [item for item in environment_lines() if item.lower().startswith("gymnasium")]
    assert len(items) == 1
    extras = re.search(r"\[([^\]]*)\]", items[0])
    assert extras is not None
    assert {"classic-control", "box2d"} <= {e.strip() for e in extras.group(1).split(",")}


def environment_section(key: str) -> list[str]:
    """The ``- item`` lines under the top-level ``key:`` of environment.yml."""
    items, inside = [], False
    for raw in (ROOT / "environment.yml").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if line and not line[0].isspace():
            inside = line == f"{key}:"
        elif inside and line.strip().startswith("- "):
            items.append(line.strip()[2:].strip())
    return items


def test_environment_channel_and_python():
    """Does environment.yml use conda-forge and Python 3.11, matching requires-python?"""
    assert "conda-forge" in environment_section("channels")
    assert "python=3.11" in environment_section("dependencies")
    assert "3.11" in pyproject()["project"]["requires-python"]


def test_environment_yaml_agrees_with_line_parsing():
    """Does the line parser see the same pins as a YAML parser?"""
    yaml = pytest.importorskip("yaml")
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    specs = []
    for dep in env["dependencies"]:
        specs += dep["pip"] if isinstance(dep, dict) else [dep]
    pins = dict(p for p in map(parse_pin, specs) if p is not None)
    assert pins == environment_pins()


def test_package_imports():
    """Do ``course_lib``, its modules and ``course_lib.solutions`` import?"""
    course_lib = importlib.import_module("course_lib")
    assert course_lib.__version__ == pyproject()["project"]["version"]
    for module in ("envs", "frames", "data", "losses", "models", "template", "train", "viz"):
        importlib.import_module(f"course_lib.{module}")
    solutions = importlib.import_module("course_lib.solutions")
    assert hasattr(importlib.import_module("course_lib.solutions.hw1"), "MyVAE")
    assert hasattr(importlib.import_module("course_lib.solutions.conv_vae"), "ConvVAE")
    assert solutions.__name__ == "course_lib.solutions"
