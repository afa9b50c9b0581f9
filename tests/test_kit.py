"""The student kit installs where students are: a fresh virtual environment, the newest releases.

The kit's ``course_lib`` wheel declares ranges (``[tool.course.student]`` of pyproject.toml), not the
development pins. Here the kit is built by ``course release``'s code, a fresh venv gets the machine's
CPU build of torch first (the development version: pip never reaches for a CUDA build), then the
wheel, with pip free to pick the newest release every other range allows. Homework 1's notebook 01,
as released with the reference answers pasted into its answer cells, then runs top to bottom at its
quick budget in that venv's own kernel, and ``python -m course_lib.lab_setup --kit`` switches that
venv's JupyterLab to the student tools (at its default, the environment's level).

The venv is built once per pytest session (a few minutes: the packages are downloaded).
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch
from browser_helpers import answers, release_once
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from traitlets.config.loader import PyFileConfigLoader

from autograder import course, release
from course_lib import lab_setup

ASSIGNMENT = "hw1_vae"
NB1 = "01_autoencoder_and_vae.ipynb"
#: The last cell of the notebook run in the kit's venv: where its kernel and course_lib come from.
PROBE = """
import importlib.util, json, sys
import course_lib, gymnasium, ipywidgets, matplotlib, numpy, torch
print("KIT-PROBE " + json.dumps({
    "prefix": sys.prefix,
    "course_lib": course_lib.__file__,
    "solutions": importlib.util.find_spec("course_lib.solutions") is not None,
    "versions": {m.__name__: m.__version__ for m in (torch, numpy, gymnasium, matplotlib, ipywidgets)},
}))
"""


def _requirement(spec: str) -> tuple[str, frozenset[str], frozenset[str]]:
    """(name, extras, version clauses) of a requirement, however it is spelled."""
    req = Requirement(spec)
    return req.name.lower(), frozenset(req.extras), frozenset(str(s) for s in req.specifier)


def _clean_env(home: Path, venv: Path) -> dict[str, str]:
    """The environment of a student's shell with ``venv`` activated: its ``bin/`` first on the PATH
    (``jupyter`` finds its subcommands there), no development venv, no Jupyter paths of this machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "VIRTUAL_ENV", "PYTHON", "COURSE_"))}
    ours = str(Path(sys.executable).parent)  # autograder.course puts the development venv's bin/ on the PATH
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != ours]
    home.mkdir(parents=True, exist_ok=True)
    env.update({"PATH": os.pathsep.join([str(venv / "bin"), *path]), "VIRTUAL_ENV": str(venv)})
    env.update({"HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / ".jupyter"), "MPLBACKEND": "Agg"})
    env.update({"SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", "OMP_NUM_THREADS": "1"})
    return env


def _run(cmd: list[str], env: dict[str, str], timeout: float = 900, cwd: Path | None = None) -> str:
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{(result.stdout + result.stderr)[-4000:]}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> dict:
    """The released hw1 kit, unzipped: its folder, its names and the wheel's metadata."""
    paths = release_once(tmp_path_factory, ASSIGNMENT)
    folder = tmp_path_factory.mktemp("kit")
    with zipfile.ZipFile(paths["kit"]) as zf:
        names = zf.namelist()
        zf.extractall(folder)
    (wheel,) = (folder / ASSIGNMENT).glob("course_lib-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        files = whl.namelist()
        (meta,) = [n for n in files if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(whl.read(meta).decode())
    return {"folder": folder / ASSIGNMENT, "names": names, "wheel": wheel, "files": files, "metadata": metadata}


@pytest.fixture(scope="module")
def student_venv(kit, tmp_path_factory) -> dict:
    """A fresh venv with the kit's wheel: torch at this machine's version, every other package at the
    newest release the wheel's ranges allow (pip's eager upgrade, no constraint but torch's)."""
    tmp = tmp_path_factory.mktemp("student_venv")
    venv = tmp / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    _run([sys.executable, "-m", "venv", str(venv)], env)
    python = venv / "bin" / "python"
    pin = tmp / "torch-only.txt"  # replaces any constraint file of the machine's pip configuration
    pin.write_text(f"torch=={torch.__version__}\n")
    env["PIP_CONSTRAINT"] = str(pin)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar=off"]
    _run([*pip, f"torch=={torch.__version__}"], env)
    _run([*pip, "--upgrade", "--upgrade-strategy=eager", str(kit["wheel"])], env)
    listed = _run([str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"], env)
    versions = {p["name"].lower(): p["version"] for p in json.loads(listed.splitlines()[0])}
    return {"python": python, "venv": venv, "tmp": tmp, "versions": versions}


def test_kit_holds_notebooks_wheel_environment_and_a_readme(kit):
    """Does the kit hold the released notebooks, the wheel, environment.yml, and a README that covers
    conda, pip in a venv and Google Colab and says to run ``python -m course_lib.lab_setup --kit``?"""
    names = {Path(n).name for n in kit["names"]}
    assert set(course.notebook_names(ASSIGNMENT)) <= names
    assert {"environment.yml", "README.md", kit["wheel"].name} <= names
    lessons = {n for n in kit["names"] if f"/{release.LESSONS_DIR}/" in n}
    assert lessons == {f"{ASSIGNMENT}/{release.LESSONS_DIR}/{p.name}" for p in release.lessons(ASSIGNMENT)}, lessons
    readme = (kit["folder"] / "README.md").read_text()
    for needed in (
        "conda env create -f environment.yml",
        "python3 -m venv",
        "Colab",
        f"pip install {kit['wheel'].name}",
    ):
        assert needed in readme, f"the README does not say {needed!r}:\n{readme}"
    assert "python -m course_lib.lab_setup --kit" in readme
    assert len(readme.splitlines()) <= 20, "the README is a short page"


def test_wheel_declares_the_student_ranges_not_the_pins(kit):
    """Does the wheel require the ranges of ``[tool.course.student]`` (Python 3.10 to 3.13, nbgrader
    for Validate, no gradebook driver, no exact pin) and ship lab_setup without the solutions or the
    checkpoints' build module?"""
    requires_python, deps = release.student_requirements()
    metadata = kit["metadata"]
    python = SpecifierSet(metadata["Requires-Python"])
    assert python == SpecifierSet(requires_python), (python, requires_python)
    assert [v in python for v in ("3.9", "3.10", "3.13", "3.14")] == [False, True, True, False], python
    declared = metadata.get_all("Requires-Dist")
    assert {_requirement(d) for d in declared} == {_requirement(d) for d in deps}, declared
    assert not [d for d in declared if "==" in d], declared
    names = {_requirement(d)[0] for d in declared}
    assert {"torch", "gymnasium", "jupyterlab", "nbgrader", "ipywidgets"} <= names
    assert "psycopg" not in names
    assert "course_lib/lab_setup.py" in kit["files"]
    assert not [f for f in kit["files"] if "solutions" in f or f.startswith("autograder")]
    assert "course_lib/pretrained/build.py" not in kit["files"], "the checkpoints' build module ships"
    assert "course_lib/pretrained/cards.py" in kit["files"]  # the rest of course_lib.pretrained does


@pytest.mark.slow(seconds=150)
def test_notebook_01_runs_in_a_fresh_venv_with_the_newest_releases(kit, student_venv):
    """Does hw1's notebook 01, as released with the reference answers pasted in, run top to bottom
    at the quick budget in a fresh venv holding only the kit's wheel and what pip chose for it?"""
    notebook = nbformat.read(kit["folder"] / NB1, as_version=4)
    reference = answers(course.source_dir(ASSIGNMENT) / NB1)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in reference:
            cell.source = reference[grade_id]
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    work = student_venv["tmp"] / "work"
    work.mkdir(exist_ok=True)
    nbformat.write(notebook, work / NB1)
    env = {**_clean_env(student_venv["tmp"] / "home", student_venv["venv"]), "COURSE_QUICK": "1"}
    cmd = [str(student_venv["python"]), "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", NB1]
    cmd += [
        "--output",
        "executed.ipynb",
        "--ExecutePreprocessor.timeout=600",
        "--ExecutePreprocessor.kernel_name=python3",
    ]
    _run(cmd, env, cwd=work)
    executed = nbformat.read(work / "executed.ipynb", as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    printed = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    probe = json.loads(printed.split("KIT-PROBE ", 1)[1])
    assert Path(probe["prefix"]).resolve() == student_venv["venv"].resolve(), probe
    assert Path(probe["course_lib"]).resolve().is_relative_to(student_venv["venv"].resolve()), probe
    assert not probe["solutions"], "the kit's course_lib has the reference answers"
    assert probe["versions"]["torch"] == torch.__version__, "pip replaced this machine's torch"
    print(f"notebook 01 ran in the kit's venv with {probe['versions']}")


@pytest.mark.slow(seconds=150)
def test_lab_setup_kit_switches_the_venvs_jupyterlab_to_the_student_tools(student_venv):
    """Does ``python -m course_lib.lab_setup --kit``, at its default level (the environment's), leave
    the venv's JupyterLab with Validate on and nbgrader's other plugins and server extensions off, as
    ``jupyter labextension list`` and ``jupyter server extension list`` report them?"""
    python, env = str(student_venv["python"]), _clean_env(student_venv["tmp"] / "home-setup", student_venv["venv"])
    said = _run([python, "-m", "course_lib.lab_setup", "--kit"], env)
    assert str(student_venv["venv"] / "etc" / "jupyter") in said, said
    labext = _run([python, "-m", "jupyter", "labextension", "list"], env)
    disabled = labext.split("Disabled extensions:", 1)[1] if "Disabled extensions:" in labext else ""
    for plugin in ("formgrader", "create-assignment", "assignment-list", "course-list", "menu"):
        assert f"@jupyter/nbgrader:{plugin}" in disabled, labext
    assert "@jupyter/nbgrader:validate-assignment" not in disabled, labext
    server = _run([python, "-m", "jupyter", "server", "extension", "list"], env)
    state = {}
    for line in server.splitlines():
        words = line.replace("\x1b[32m", "").replace("\x1b[31m", "").replace("\x1b[0m", "").split()
        if len(words) == 2 and words[0].startswith("nbgrader.server_extensions.") and words[1].endswith("abled"):
            state[words[0].rsplit(".", 1)[1]] = words[1]
    assert state == {
        "formgrader": "disabled",
        "assignment_list": "disabled",
        "course_list": "disabled",
        "validate_assignment": "enabled",
    }, server


# ---------------------------------------------------------------- python -m course_lib.lab_setup
NBGRADER_LAB = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "@jupyter" / "nbgrader"
NBGRADER_SERVER = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "nbgrader.json"


def test_switches_name_the_installed_nbgraders_plugins_and_server_extensions():
    """Is every plugin id and server extension that lab_setup switches one that the installed nbgrader
    registers, with the instructor's tools always off, Validate always on, and the Assignments panel
    on only with an exchange?"""
    bundle = "".join(p.read_text() for p in (NBGRADER_LAB / "static").glob("*.js"))
    declared = json.loads(NBGRADER_SERVER.read_text())["ServerApp"]["jpserver_extensions"]
    kit, hub = lab_setup.plan(hub=False), lab_setup.plan(hub=True)
    for plan in (kit, hub):
        for plugin in plan.plugins_off + plan.plugins_on:
            assert f'"{plugin}"' in bundle, f"nbgrader's lab extension registers no plugin {plugin}"
        assert set(plan.server_off + plan.server_on) == set(declared), declared
        assert set(lab_setup.INSTRUCTOR_PLUGINS) <= set(plan.plugins_off)
        assert lab_setup.VALIDATE in plan.plugins_on
        assert not set(plan.plugins_off) & set(plan.plugins_on)
    assert lab_setup.ASSIGNMENT_LIST in kit.plugins_off and lab_setup.ASSIGNMENT_LIST in hub.plugins_on


def test_student_config_is_what_nbgrader_reads(tmp_path):
    """Does the students' nbgrader_config.py, loaded as nbgrader loads it, give the exchange, the
    course, the fixed student id and Validate's time limit, and the kit's only the time limit?"""
    (tmp_path / "nbgrader_config.py").write_text(lab_setup.student_config(tmp_path / "exchange", "vae101", "alice"))
    config = PyFileConfigLoader("nbgrader_config.py", str(tmp_path)).load_config()
    assert config.Exchange.root == str((tmp_path / "exchange").resolve())
    assert config.CourseDirectory.course_id == "vae101" and config.CourseDirectory.student_id == "alice"
    assert config.Execute.timeout == lab_setup.VALIDATE_CELL_TIMEOUT
    (tmp_path / "nbgrader_config.py").write_text(lab_setup.student_config())
    config = PyFileConfigLoader("nbgrader_config.py", str(tmp_path)).load_config()
    assert "Exchange" not in config and "CourseDirectory" not in config and config.Execute.timeout > 30


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("/x", "vae101", "a+b"), "'+'"),
        (("/x", "vae101", "*"), "'*'"),
        (("/x", " "), "course id is empty"),
        (("/x", None), "both"),
        ((None, None, "alice"), "needs an exchange"),
    ],
)
def test_student_config_refuses_what_nbgrader_would(args, error):
    """Are a student id nbgrader refuses, an empty course id and an exchange without a course refused
    with a message saying so?"""
    with pytest.raises(ValueError, match=re.escape(error)):
        lab_setup.student_config(*args)


def test_lab_setup_switches_between_hub_and_kit_at_the_user_level(tmp_path, monkeypatch, capsys):
    """Does a hub set-up, then a kit set-up, then a hub set-up again, in one user's configuration, leave
    each time exactly the plugins and server extensions of that mode on, as Jupyter merges them?"""
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "0")  # a hub user, who does not own the environment
    args = ["--hub", "--exchange", str(tmp_path / "exchange"), "--course-id", "vae101", "--user"]
    for argv, hub in ((args, True), (["--kit", "--user"], False), (args, True)):
        assert lab_setup.main(argv) == 0, capsys.readouterr().err
        plan = lab_setup.plan(hub)
        assert set(plan.plugins_off) <= lab_setup.disabled_plugins()
        assert not set(plan.plugins_on) & lab_setup.disabled_plugins()
        server = lab_setup.server_extensions()
        assert [server[m] for m in plan.server_off + plan.server_on] == [False] * len(plan.server_off) + [True] * len(
            plan.server_on
        )
        written = (tmp_path / "jupyter" / "nbgrader_config.py").read_text()
        assert ("c.Exchange.root" in written) == hub
    assert "note: the exchange" in capsys.readouterr().out  # it does not exist here


def test_lab_setup_says_when_a_higher_level_undoes_a_switch(tmp_path, monkeypatch, capsys):
    """In a venv its owner runs (the environment's configuration ranks above the user's), is a ``--user``
    set-up that cannot switch nbgrader's server extensions off an error that says why?"""
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")
    assert lab_setup.main(["--kit", "--user"]) == 1
    said = capsys.readouterr().err
    assert "nbgrader.server_extensions.formgrader is still enabled" in said and "JUPYTER_PREFER_ENV_PATH" in said


def test_lab_setup_refuses_mixed_modes(capsys):
    """Does the command refuse a kit set-up with an exchange, and a hub set-up without a course id?"""
    for argv in (["--kit", "--exchange", "/x"], ["--hub", "--exchange", "/x"]):
        with pytest.raises(SystemExit) as exit_:
            lab_setup.main(argv)
        assert exit_.value.code == 2
    assert "--kit takes no --exchange" in capsys.readouterr().err
