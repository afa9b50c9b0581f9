"""Tamper suite: submissions that attack the grader, graded through real nbgrader in the sandbox.

Most attacks sit in the blank release of the fastest notebook (``05_other_environment``), so that an
attack that worked would show up as points that the blank answers cannot earn, or as damage outside
the student's folder. Attacks on the verdicts themselves (an input transformer that empties the test
cells, a pickled payload that switches the checks off, one that forges their records, an IPython
event hook that clears the outputs) sit beside the same answers without them, and must gain nothing
over them and be named in the report. A correct submission is graded in the same run and must keep
its full marks. Threat model and mechanisms: ``autograder/sandbox.py``, ``autograder/tamper.py``,
``autograder/judging.py``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from pathlib import Path

import nbformat
import pytest
from attacks import DOCTOR, made_up_payload, smuggled, structures
from nbformat.v4 import new_code_cell

from autograder import course, gradebook, intake, pipeline, release
from autograder.checks import CheckFailed, require_student_code
from autograder.submissions import replace_answer
from autograder.submissions.hw1_vae import HW1_MUTANTS, LOGSIGMA_BUG, TEMPLATE_RESET_BUG
from autograder.tamper import REVIEW, TAMPERING, scan_notebook

pytestmark = pytest.mark.slow(seconds=735)
ASSIGNMENT = "hw1_vae"
SOURCE = course.source_dir(ASSIGNMENT)
NB5, NB3, NB1 = "05_other_environment.ipynb", "03_curating_cartpole.ipynb", "01_autoencoder_and_vae.ipynb"
#: Above what the slowest graded cell (a5_train at the grading budget) takes with two graders on two
#: busy cores, and short enough that the time attacks cost little.
CELL_TIMEOUT = 60

# Attacks added as extra cells (cell id = attack name) to the blank notebook 05.
EXTRA_CELL_ATTACKS = {
    "infinite_loop": "while True:\n    pass",
    "allocate_20gb": "import numpy as np\nblob = np.ones(20 * 1024**3, dtype=np.uint8)",
    # forks until the process limit stops it, then each process waits 5 s and exits
    "fork_bomb": "import subprocess, sys, time\n"
    "bomb = 'import os, time\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n"
    "        time.sleep(5)\\n        os._exit(0)'\n"
    "subprocess.Popen([sys.executable, '-c', bomb])\n"
    "time.sleep(1.5)\nsubprocess.run(['true'])",
    "sys_exit": "import sys\nsys.exit(0)",
    "os_exit": "import os\nos._exit(0)",
    "print_100mb": "print('x' * 100_000_000)",
    "stderr": "import sys\nsys.stderr.write('noise\\n' * 10_000)",
    "sleep_past_timeout": "import time\ntime.sleep(10_000)",
    "write_gradebook": "from pathlib import Path\n(Path.cwd().parents[2] / 'gradebook.db').write_bytes(b'')",
    # the kernel's folder is <root>/autograded/<student>/hw1_vae
    "write_other_student": "from pathlib import Path\n"
    "(Path.cwd().parents[1] / 'changed_points' / 'pwned.txt').write_text('x')",  # graded just before
    "write_course_source": "from pathlib import Path\n"
    "(Path.cwd().parents[2] / 'source' / 'hw1_vae' / 'pwned.txt').write_text('x')",
    "network": "import socket\nsocket.create_connection(('1.1.1.1', 443), timeout=5)",
    # the answers on disk: the repository's source notebooks, the course's copy, the reference module
    "read_repo_solutions": "import course_lib\nfrom pathlib import Path\n"
    "repo = Path(course_lib.__file__).resolve().parents[1]\n"
    "(repo / 'assignments' / 'source' / 'hw1_vae' / '05_other_environment.ipynb').read_text()",
    "read_course_source": "from pathlib import Path\n"
    "(Path.cwd().parents[2] / 'source' / 'hw1_vae' / '05_other_environment.ipynb').read_text()",
    "read_reference": "import course_lib\nfrom pathlib import Path\n"
    "(Path(course_lib.__file__).resolve().parent / 'solutions' / 'hw1.py').read_text()",
}
# Attacks that do not disturb each other share a student, to keep the suite short.
STUDENTS = {
    "escape_attempts": [
        "write_gradebook",
        "write_other_student",
        "write_course_source",
        "network",
        "allocate_20gb",
        "print_100mb",
        "stderr",
        "sys_exit",
        "read_repo_solutions",
        "read_course_source",
        "read_reference",
    ],
    "time_attacks": ["infinite_loop", "sleep_past_timeout"],
    "fork_bomb": ["fork_bomb"],
}
STUDENT_OF = {attack: student for student, attacks in STUDENTS.items() for attack in attacks}
# A correct notebook 05 that ends its kernel right after its first test cell passed.
STUDENT_OF["os_exit"] = "os_exit"
# An answer cell, not an extra one, that sleeps past the limit: the report names it by its grade_id.
ANSWER_SLEEPS = "import time\ntime.sleep(600)"
STUDENT_OF["a5_collect_other_frames"] = "time_attacks"


# Attacks on the verdicts, smuggled in pickled bytes (tests/attacks.py), so that the static scan reports
# them for review without zeroing the notebook: the defense under test is the judging outside the kernel.
#: Empties every later cell that holds an assert or a check call.
EMPTY_TEST_CELLS = smuggled(
    "get_ipython().input_transformers_cleanup.append(\n"
    "    lambda lines: [] if any(('assert' in l) or ('checks' in l) for l in lines) else lines)\n"
)
#: Clears every cell's outputs once it has run, errors and records included.
CLEAR_OUTPUTS = smuggled(
    "from IPython.display import clear_output\n"
    "get_ipython().events.register('post_run_cell', lambda result: clear_output())\n"
)
#: The attack of the issue that asked for evidence, in plain code: a forger installed through the list
#: behind ``input_transformers_cleanup``, disguised as IPython's own, its data encoded with codecs.
DISGUISED_TRANSFORMER = """
import codecs
def replace_test_cells(lines):
    return lines
replace_test_cells.__module__ = "IPython.core.inputtransformer2"
get_ipython().input_transformer_manager.cleanup_transforms.append(replace_test_cells)
key = codecs.encode(b"record", "base64")
"""
#: Two bugs that only hidden checks catch (activities 3 and 4), the answers the payloads go with.
BUGGY_COLLECTORS = {
    "a3_collect_frames": HW1_MUTANTS["a3_reset_one_frame_early"].code,
    "a4_collect_upright_frames": HW1_MUTANTS["a4_actions_unseeded"].code,
}
NB3_CHECKS = ("a3_reset_pattern", "a3_frames", "a4_angles", "a4_count")
#: Bugs of activities 1 and 2 that a doctoring forger (tests/attacks.DOCTOR) tries to hide.
DOCTORED_MUTANTS = ("a1_relu_output", "a2_logvar_as_logsigma")


#: The payload that switches the hidden checks of notebook 03 off.
CHECKS_OFF = "import autograder.checks.hw1_vae as h\nfor name in {names}:\n    setattr(h, name, lambda *a, **k: None)\n"
#: The payload that replaces the probes: every check displays a record of a correct answer made
#: before grading, given the nonce of the cell it runs in.
FORGER = """
import json
import autograder.checks as c
from IPython.display import display
STORED = json.loads({stored!r})
def forged(self, *objects, nonce=None):
    display({{c.records.MIME: dict(STORED[self.grade_id], nonce=nonce)}}, raw=True)
c.Check.__call__ = forged
"""


def _cells(nb, grade_id: str) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]


def _edit(path: Path, fn) -> None:
    nb = nbformat.read(path, as_version=4)
    fn(nb)
    nbformat.write(nb, path)


def _student(subs: Path, name: str, template: Path) -> Path:
    folder = subs / name
    folder.mkdir(parents=True, exist_ok=True)  # a student may hand in several notebooks
    target = folder / template.name
    target.write_bytes(template.read_bytes())
    return target


@pytest.fixture(scope="module")
def tampered(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("tamper")
    released = release.release(ASSIGNMENT, out / "release_run")["release"]
    subs = out / "submissions"
    blank5 = released / NB5

    correct = subs / "solutions"
    correct.mkdir(parents=True)
    (correct / NB5).write_bytes((SOURCE / NB5).read_bytes())

    for student, attacks in STUDENTS.items():

        def add_attacks(nb, attacks=attacks):
            at = _cells(nb, "a5_collect_other_frames")[0] + 1
            for attack in reversed(attacks):
                cell = new_code_cell(EXTRA_CELL_ATTACKS[attack])
                cell["id"] = attack
                nb.cells.insert(at, cell)

        path = _student(subs, student, blank5)
        _edit(path, add_attacks)
        if student == "time_attacks":
            replace_answer(path, "a5_collect_other_frames", ANSWER_SLEEPS)

    def exit_after_first_test(nb):
        cell = new_code_cell(EXTRA_CELL_ATTACKS["os_exit"])
        cell["id"] = "os_exit"
        nb.cells.insert(_cells(nb, "a5_frames")[0] + 1, cell)

    _edit(_student(subs, "os_exit", SOURCE / NB5), exit_after_first_test)

    # nbgrader's own defenses: test cells, ids and points are restored from the gradebook
    def edit_tests(nb):
        for gid in ("a5_frames", "a5_beats_baseline"):
            nb.cells[_cells(nb, gid)[0]].source = "pass"

    def delete_tests(nb):
        for gid in ("a5_frames", "a5_beats_baseline"):
            del nb.cells[_cells(nb, gid)[0]]

    def duplicate_cell(nb):
        cell = nbformat.from_dict(nb.cells[_cells(nb, "a5_frames")[0]])
        cell.source = "pass"
        cell.pop("id", None)
        nb.cells.insert(0, new_code_cell("pass", metadata=cell.metadata))

    def change_points(nb):
        for gid in ("a5_frames", "a5_beats_baseline"):
            cell = nb.cells[_cells(nb, gid)[0]]
            cell.source = "pass"
            cell.metadata["nbgrader"]["points"] = 100

    for name, fn in {
        "edited_test_cells": edit_tests,
        "deleted_test_cells": delete_tests,
        "changed_points": change_points,
    }.items():
        _edit(_student(subs, name, blank5), fn)
    # a correct notebook with a copy of a test cell (JupyterLab copies nbgrader metadata with a cell)
    _edit(_student(subs, "duplicated_grade_cell", SOURCE / NB5), duplicate_cell)

    # reaching the reference or the checks from the student's cells
    path = _student(subs, "imports_reference", released / NB3)
    replace_answer(path, "a3_collect_frames", "from course_lib.solutions.hw1 import collect_frames")
    path = _student(subs, "patches_checks", released / NB3)
    replace_answer(
        path,
        "a3_collect_frames",
        TEMPLATE_RESET_BUG + "\nimport autograder.checks.hw1_vae as hidden\nhidden.a3_reset_pattern = lambda f: None\n"
        "EpisodeRecorder.episode_lengths = lambda self: [1]\nEpisodeRecorder.steps_after_end = lambda self: 0\n",
    )
    path = _student(subs, "patches_allclose", SOURCE / NB1)
    replace_answer(path, "a2_reparameterize", LOGSIGMA_BUG + "\ntorch.allclose = lambda *args, **kwargs: True\n")
    path = _student(subs, "reads_checks", released / NB5)
    _edit(
        path,
        lambda nb: nb.cells.insert(
            3,
            new_code_cell(
                "import glob, sys\n"
                "secrets = [open(p).read() for p in glob.glob(sys.prefix + '/../autograder/checks/*.py')]"
            ),
        ),
    )

    # attacks on the verdicts
    for notebook in (NB1, NB3, NB5):
        path = _student(subs, "empties_test_cells", released / notebook)
        _edit(path, lambda nb: _prepend_to_first_answer(nb, EMPTY_TEST_CELLS))
    _edit(_student(subs, "clears_outputs", blank5), lambda nb: _prepend_to_first_answer(nb, CLEAR_OUTPUTS))
    stored = {grade_id: _reference_record(grade_id) for grade_id in NB3_CHECKS}
    payloads = {
        "buggy_collectors": "",
        "switches_checks_off": smuggled(CHECKS_OFF.format(names=NB3_CHECKS)),
        "forges_records": smuggled(FORGER.format(stored=json.dumps(stored))),
    }
    for student, payload in payloads.items():
        path = _student(subs, student, SOURCE / NB3)
        for grade_id, code in BUGGY_COLLECTORS.items():
            replace_answer(path, grade_id, code + (payload if grade_id == "a3_collect_frames" else ""))
    # forgers of every check: plain and disguised, made up from nothing, and doctoring a buggy answer's records
    disguised = _student(subs, "disguised_transformer", released / NB1)
    _edit(disguised, lambda nb: _prepend_to_first_answer(nb, DISGUISED_TRANSFORMER))
    made_up = smuggled(made_up_payload(structures(ASSIGNMENT)))
    for notebook in (NB1, NB3, NB5):
        _edit(_student(subs, "forges_made_up", released / notebook), lambda nb: _prepend_to_first_answer(nb, made_up))
    path = _student(subs, "doctors_mutants", SOURCE / NB1)
    for name in DOCTORED_MUTANTS:
        replace_answer(path, HW1_MUTANTS[name].answer, HW1_MUTANTS[name].code)
    _edit(path, lambda nb: _prepend_to_first_answer(nb, smuggled(DOCTOR)))

    gradebook_file = out / "grades" / "course" / "gradebook.db"
    start = time.perf_counter()
    reports = pipeline.autograde(
        ASSIGNMENT, subs, out / "grades", cell_timeout=CELL_TIMEOUT, submission_timeout=300, workers=2
    )
    seconds = time.perf_counter() - start
    scores = gradebook.cell_scores(out / "grades" / "cells.csv")
    return {
        "out": out,
        "reports": {r.student_id: r for r in reports},
        "scores": scores,
        "seconds": seconds,
        "gradebook": gradebook_file,
    }


def _prepend_to_first_answer(nb, code: str) -> None:
    first = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code")
    first.source = code + first.source


def _reference_record(grade_id: str) -> dict:
    """A record of the reference collectors for ``grade_id``, made before grading with another nonce."""
    from answers import namespace, record_of

    ns = namespace(ASSIGNMENT, NB3)
    function = "collect_frames" if grade_id.startswith("a3") else "collect_upright_frames"
    return record_of(grade_id, ns[function], nonce="0123456789abcdef")


def _earned(tampered, student: str, prefix: str = "a") -> float:
    return sum(s for gid, (s, _) in tampered["scores"][student].items() if gid.startswith(prefix))


def test_correct_submission_keeps_full_marks(tampered):
    """Is the correct submission graded as usual next to the attacks?"""
    a5 = {gid: s for gid, s in tampered["scores"]["solutions"].items() if gid.startswith("a5")}
    assert a5 and all(score == top for score, top in a5.values()), a5


@pytest.mark.parametrize("student", sorted(STUDENTS))
def test_resource_and_escape_attacks_gain_nothing(tampered, student):
    """Does a submission whose extra cells attack the machine earn no point for blank answers?"""
    assert _earned(tampered, student) == 0


@pytest.mark.parametrize(
    ("attack", "expected"),
    [
        ("infinite_loop", f"cell infinite_loop ran past the {CELL_TIMEOUT} s cell limit"),
        ("sleep_past_timeout", f"cell sleep_past_timeout ran past the {CELL_TIMEOUT} s cell limit"),
        ("a5_collect_other_frames", f"a5_collect_other_frames ran past the {CELL_TIMEOUT} s cell limit"),
        ("allocate_20gb", "cell allocate_20gb hit the memory limit"),
        ("fork_bomb", "cell fork_bomb hit the process limit"),
        ("os_exit", "cell os_exit killed its kernel (kernel died)"),
        ("sys_exit", "cell sys_exit called sys.exit()"),
        ("print_100mb", "cell print_100mb produced more than 2 MB of printed text; the grader dropped it"),
        ("write_gradebook", "cell write_gradebook was refused"),
        ("write_other_student", "cell write_other_student was refused"),
        ("write_course_source", "cell write_course_source was refused"),
        ("network", "cell network was refused by the sandbox"),
        ("read_repo_solutions", "cell read_repo_solutions was refused by the sandbox, which hides"),
        ("read_course_source", "cell read_course_source was refused by the sandbox, which hides"),
        ("read_reference", "cell read_reference was refused by the sandbox, which hides"),
    ],
)
def test_attack_is_reported_by_name(tampered, attack, expected):
    """Is each attack stopped by a limit or the sandbox and named in the grading report?"""
    student = STUDENT_OF[attack]
    problems = tampered["reports"][student].summary()
    assert expected in problems, problems
    assert f"{student}:" in (tampered["out"] / "grades" / "report.txt").read_text()


def test_nothing_outside_the_sandbox_changed(tampered):
    """Are the course source, the other students' folders and the gradebook untouched?"""
    root = tampered["out"] / "grades" / "course"
    assert not list(root.rglob("pwned.txt"))
    assert tampered["gradebook"].stat().st_size > 10_000


def test_grading_ends_in_bounded_time(tampered):
    """Does the whole tamper run finish within its limits (no hang, no runaway process)?"""
    n = len(tampered["reports"])
    assert tampered["seconds"] < n * 60, tampered["seconds"]


def test_kernel_death_keeps_the_points_earned_before_it(tampered):
    """Does a kernel killed after a passing test cell keep that cell's points, and only those?"""
    scores = tampered["scores"]["os_exit"]
    assert scores["a5_frames"][0] == scores["a5_frames"][1] > 0
    assert scores["a5_beats_baseline"][0] == 0


def test_copy_of_a_grade_cell_neither_earns_nor_costs(tampered):
    """Is a correct notebook with a pasted copy of a test cell graded like the correct one, and the copy named?"""
    assert tampered["scores"]["duplicated_grade_cell"] == tampered["scores"]["solutions"]
    problems = tampered["reports"]["duplicated_grade_cell"].summary()
    assert "1 copy(ies) of grade cell a5_frames" in problems, problems


@pytest.mark.parametrize("student", ["edited_test_cells", "deleted_test_cells", "changed_points"])
def test_test_cells_and_points_are_restored(tampered, student):
    """Are edited or deleted test cells and changed points undone by nbgrader?"""
    scores = tampered["scores"][student]
    assert _earned(tampered, student) == 0
    maxima = {gid: top for gid, (_, top) in scores.items()}
    assert maxima == {gid: top for gid, (_, top) in tampered["scores"]["solutions"].items()}


@pytest.mark.parametrize(
    ("student", "prefix"),
    [("imports_reference", "a3"), ("patches_checks", "a3"), ("patches_allclose", "a2"), ("reads_checks", "a5")],
)
def test_reaching_the_grader_gains_nothing_and_is_reported(tampered, student, prefix):
    """Is an answer that imports the reference, patches the checks or torch.allclose, or reads the
    checks from disk scored zero and reported as tampering?"""
    assert _earned(tampered, student, prefix) == 0
    assert any(p.kind == "tampering" for p in tampered["reports"][student].problems)


def test_require_student_code_refuses_the_reference_and_wrappers():
    """Does the provenance check refuse the reference, a subclass of it and a wrapper around it?"""
    from course_lib.solutions import hw1 as reference

    with pytest.raises(CheckFailed):
        require_student_code(reference.collect_frames, "collect_frames")

    namespace: dict = {"__name__": "__main__", "reference": reference}
    exec("def collect_frames(*args, **kwargs):\n    return reference.collect_frames(*args, **kwargs)", namespace)
    with pytest.raises(CheckFailed):
        require_student_code(namespace["collect_frames"], "collect_frames")
    exec("class MyVAE(reference.MyVAE):\n    pass", namespace)
    with pytest.raises(CheckFailed):
        require_student_code(namespace["MyVAE"], "MyVAE")
    exec("import numpy as np\ndef collect_frames(env, n):\n    return np.zeros((n, 64, 64, 3), np.uint8)", namespace)
    require_student_code(namespace["collect_frames"], "collect_frames")


@pytest.mark.parametrize(
    "line",
    [
        'vars(torch)["allclose"] = lambda *a, **k: True',
        'torch.__dict__["allclose"] = lambda *a, **k: True',
        't = torch\nsetattr(t, "all" + "close", lambda *a, **k: True)',
        'globals()["np"] = fake_numpy',
    ],
)
def test_scan_catches_indirect_patching(tmp_path, line):
    """Are namespace edits that avoid the plain `torch.allclose = ...` spelling caught too?"""
    path = tmp_path / NB5
    path.write_bytes((SOURCE / NB5).read_bytes())
    replace_answer(path, "a5_collect_other_frames", "import torch\n" + line)
    assert scan_notebook(path), line


def test_scan_ignores_the_source_notebooks():
    """Does the tamper scan stay quiet on the course's own solutions (no false alarms)?"""
    for path in sorted(SOURCE.glob("*.ipynb")):
        assert scan_notebook(path) == [], path.name


def test_sandbox_refuses_to_run_without_bubblewrap(monkeypatch, tmp_path):
    """Is a missing bubblewrap a clear error rather than a silent fallback?"""
    import shutil as _shutil

    from autograder.sandbox import SandboxUnavailableError

    monkeypatch.setattr(_shutil, "which", lambda name: None)
    (tmp_path / "subs" / "someone").mkdir(parents=True)
    with pytest.raises(SandboxUnavailableError, match="--no-sandbox"):
        pipeline.autograde(ASSIGNMENT, tmp_path / "subs", tmp_path / "out")


@pytest.fixture(scope="module")
def two_students(tmp_path_factory) -> Path:
    """Submissions of notebook 05 only: the solution, and one with the answer left unwritten (quick
    to grade: its cells fail at once)."""
    subs = tmp_path_factory.mktemp("two") / "subs"
    for student in ("solutions", "unanswered"):
        (subs / student).mkdir(parents=True)
        (subs / student / NB5).write_bytes((SOURCE / NB5).read_bytes())
    replace_answer(subs / "unanswered" / NB5, "a5_collect_other_frames", "raise NotImplementedError()")
    return subs


@pytest.fixture(scope="module")
def serial_run(two_students, tmp_path_factory) -> Path:
    """The two students graded serially into one sqlite gradebook: the reference for the others."""
    out = tmp_path_factory.mktemp("serial")
    pipeline.autograde(ASSIGNMENT, two_students, out, feedback=False, workers=1)
    return out


def _digests(out: Path) -> list[str]:
    return [hashlib.sha256((out / name).read_bytes()).hexdigest() for name in ("cells.csv", "grades.csv")]


def test_two_workers_and_serial_grading_give_identical_csvs(two_students, serial_run, tmp_path):
    """Does grading the same class twice, serially and then with 2 workers, give identical CSVs?"""
    pipeline.autograde(ASSIGNMENT, two_students, tmp_path, feedback=False, workers=2)
    assert _digests(serial_run) == _digests(tmp_path)
    assert (tmp_path / "course" / "gradebook_1.db").exists()
    scores = gradebook.activity_scores(tmp_path / "cells.csv")
    assert scores["solutions"]["a5"] == (6.0, 6.0) and scores["unanswered"]["a5"][0] == 0.0


def test_postgresql_gradebook_shared_by_two_machines(two_students, serial_run, postgres, tmp_path):
    """Two graders (`--shard 1/2`, `--shard 2/2`) at once on one PostgreSQL gradebook, then one export:
    are the class's CSVs those of serial sqlite grading?"""
    from concurrent.futures import ThreadPoolExecutor

    from autograder import cli

    url = postgres.create_database()
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(
                pipeline.autograde,
                ASSIGNMENT,
                two_students,
                tmp_path / f"machine{k}",
                feedback=False,
                db_url=url,
                shard=(k, 2),
            )
            for k in (1, 2)
        ]
        graded = [[r.student_id for r in f.result()] for f in futures]
    assert graded == [["solutions"], ["unanswered"]]
    # a machine that starts late, once grades refer to the assignment's cells, finds it recorded
    release.generate_assignment(ASSIGNMENT, tmp_path / "machine1" / "course", url)
    assert not list((tmp_path / "machine1" / "course").glob("gradebook_*.db"))  # no sqlite gradebooks
    own = list(csv.DictReader((tmp_path / "machine2" / "cells.csv").open()))
    assert {row["student_id"] for row in own} == {"unanswered"}
    assert cli.main(["export", ASSIGNMENT, "--out", str(tmp_path / "class"), "--db", url]) == 0
    assert _digests(tmp_path / "class") == _digests(serial_run)
    # a machine's own export reads its share back from the server
    assert cli.main(["export", ASSIGNMENT, "--out", str(tmp_path / "machine1"), "--db", url]) == 0
    # the class report of the shared gradebook, with the saved reports of both machines
    report = ["report", ASSIGNMENT, "--out", str(tmp_path / "machine1"), "--db", url]
    assert cli.main([*report, "--runs", str(tmp_path / "machine2")]) == 0
    summary = json.loads((tmp_path / "machine1" / "report" / "report.json").read_text())
    assert summary["students"] == ["solutions", "unanswered"] and summary["warnings"] == []
    solutions, unanswered = summary["scores"]["total"]["points"]
    assert summary["gradebook"] == gradebook.redact(url) and solutions > unanswered == 0


def test_shard_auto_in_two_pods_of_an_indexed_job(two_students, serial_run, postgres, tmp_path):
    """Two `course autograde --shard auto` processes started at once, as the two pods of a Kubernetes
    Indexed Job (JOB_COMPLETION_INDEX 0 and 1, COURSE_SHARDS 2) sharing a PostgreSQL gradebook, then
    `course export --db`: does each grade its own student, and are the class's CSVs serial grading's?"""
    import os
    import subprocess
    import sys

    from autograder import shards

    url = postgres.create_database()
    env = {k: v for k, v in os.environ.items() if k not in (*shards.KUBERNETES, *shards.SLURM)}
    course_command = [sys.executable, "-m", "autograder.cli"]
    grade = [*course_command, "autograde", ASSIGNMENT, str(two_students), "--db", url, "--shard", "auto"]
    pods = [
        subprocess.Popen(
            [*grade, "--out", str(tmp_path / f"pod{index}")],
            env={**env, shards.KUBERNETES_INDEX: str(index), shards.SHARD_COUNT: "2"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in (0, 1)
    ]
    logs = [pod.communicate(timeout=1200)[0] for pod in pods]
    assert [pod.returncode for pod in pods] == [0, 0], logs
    for index, student in enumerate(["solutions", "unanswered"]):  # JOB_COMPLETION_INDEX 0 grades shard 1/2
        rows = csv.DictReader((tmp_path / f"pod{index}" / "cells.csv").open())
        assert {row["student_id"] for row in rows} == {student}
    export = [*course_command, "export", ASSIGNMENT, "--out", str(tmp_path / "class"), "--db", url]
    subprocess.run(export, env=env, check=True, capture_output=True, timeout=300)
    assert _digests(tmp_path / "class") == _digests(serial_run)


def test_bad_db_url_and_shard_are_clear_errors(tmp_path):
    """Are a database URL the grader cannot open and an impossible shard refused before any grading?"""
    (tmp_path / "subs" / "someone").mkdir(parents=True)
    with pytest.raises(course.PipelineError, match="postgresql://USER:PASSWORD@HOST"):
        pipeline.autograde(ASSIGNMENT, tmp_path / "subs", tmp_path / "out", db_url="nosuchdb://grader:pw@host/x")
    with pytest.raises(course.PipelineError, match="1 <= k <= n"):
        pipeline.autograde(ASSIGNMENT, tmp_path / "subs", tmp_path / "out", shard=(3, 2))
    assert gradebook.redact("postgresql://grader:secret@db.example.org/course") == (
        "postgresql://grader:***@db.example.org/course"
    )
    with pytest.raises(course.PipelineError, match="pass its URL with --db"):
        gradebook.export(ASSIGNMENT, tmp_path, tmp_path, {"postgresql://grader:***@db/course": ["someone"]})


def _lms_zip(path: Path, files: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def test_import_submissions_from_an_lms_zip(tmp_path):
    """Does an LMS zip become one folder per student, with badly named files reported by name?"""
    nb = (SOURCE / NB5).read_bytes()
    archive = _lms_zip(
        tmp_path / "export.zip",
        {
            "jdoe_41_1234_05_other_environment.ipynb": nb,
            "asmith_late_42_99_01_autoencoder_and_vae-1.ipynb": nb,
            "bob_1_2_99_extra.ipynb": nb,
            "notes.txt": b"hello",
            "weird.ipynb": nb,
        },
    )
    problems = intake.import_submissions(ASSIGNMENT, archive, tmp_path / "subs")
    found = sorted(str(p.relative_to(tmp_path / "subs")) for p in (tmp_path / "subs").rglob("*.ipynb"))
    assert found == ["asmith/01_autoencoder_and_vae.ipynb", "bob/99_extra.ipynb", "jdoe/05_other_environment.ipynb"]
    text = " | ".join(problems)
    assert "weird.ipynb: does not follow the LMS naming" in text
    assert "notes.txt: not a notebook" in text
    assert "bob: 99_extra.ipynb is not a notebook of hw1_vae" in text


def test_import_submissions_rejects_a_file_that_is_not_a_zip(tmp_path):
    """Is a file that is not a zip archive refused with its name in the message?"""
    bogus = tmp_path / "export.zip"
    bogus.write_text("not a zip")
    with pytest.raises(course.PipelineError, match=r"export\.zip is not a zip archive"):
        intake.import_submissions(ASSIGNMENT, bogus, tmp_path / "subs")


def test_only_files_the_sandbox_hides_are_reported_as_refused(tmp_path, monkeypatch):
    """Is a FileNotFoundError reported as the sandbox's refusal only for a file outside the kernel's view
    (the course, the repository) or inside its hidden folders (the reference answers), not for a file
    the notebook itself failed to write in its own folder or in /tmp?"""
    from autograder.nbgrader_ext import cell_problems
    from autograder.sandbox import KERNEL_HOME, VIEW_ENV, View

    view = View.of_this_python()
    monkeypatch.setenv(VIEW_ENV, view.to_json())
    workdir = KERNEL_HOME / ASSIGNMENT
    (tmp_path / "course" / "source").mkdir(parents=True)
    (tmp_path / "course" / "source" / "x.ipynb").write_text("{}")  # on the machine, not in the kernel's /tmp
    found = {}
    for name, path in [
        ("course", tmp_path / "course" / "source" / "x.ipynb"),
        ("repository", Path(course.REPO) / "assignments" / "source"),
        ("reference", view.hidden[0] / "hw1.py"),
        ("own", workdir / "a1_generated_0.png"),
        ("tmp", Path("/tmp/frames.npz")),
    ]:
        cell = new_code_cell("open(...)")
        cell.outputs = [
            nbformat.v4.new_output(
                "error", ename="FileNotFoundError", evalue=f"[Errno 2] No such file or directory: '{path}'"
            )
        ]
        found[name] = [kind for kind, _ in cell_problems(cell, workdir)]
    expected = {"course": ["hidden_file"], "repository": ["hidden_file"], "reference": ["hidden_file"]}
    assert found == {**expected, "own": [], "tmp": []}


def test_emptied_test_cells_earn_nothing_and_are_named(tampered):
    """Does an input transformer that empties every test cell earn the blank release's zero, with each
    emptied cell named for review?"""
    assert _earned(tampered, "empties_test_cells") == 0
    problems = tampered["reports"]["empties_test_cells"].summary()
    for grade_id in tampered["scores"]["solutions"]:
        assert f"{grade_id} left no record of its hidden check although it raised nothing" in problems, grade_id
    assert "for review" in problems and "unpickles data (pickle)" in problems


def test_an_event_hook_that_clears_outputs_earns_nothing_and_is_named(tampered):
    """Does a post_run_cell hook that clears every output, errors included, earn nothing for blank
    answers (nbgrader puts back the error the kernel replied with; a cleared record is a missing one),
    and is it named?"""
    assert _earned(tampered, "clears_outputs") == 0
    problems = tampered["reports"]["clears_outputs"].summary()
    assert "for review" in problems and "unpickles data (pickle)" in problems, problems


@pytest.mark.parametrize("student", ["switches_checks_off", "forges_records"])
def test_payloads_against_the_checks_gain_nothing_and_are_named(tampered, student):
    """Does a pickled payload that switches the hidden checks off, or replaces their probes with a
    forger of records, earn no more than the same buggy answers without it, and is it named?"""
    twin = tampered["scores"]["buggy_collectors"]
    assert {gid: twin[gid][0] for gid in NB3_CHECKS} == {
        "a3_reset_pattern": 0.0,
        "a3_frames": twin["a3_frames"][1],
        "a4_angles": twin["a4_angles"][1],
        "a4_count": 0.0,
    }
    attack = tampered["scores"][student]
    assert all(attack[gid][0] <= twin[gid][0] for gid in NB3_CHECKS), attack
    problems = tampered["reports"][student].summary()
    assert "for review" in problems and "unpickles data (pickle)" in problems and "base64" in problems, problems


def test_the_scan_reads_code_as_code(tmp_path):
    """Are the verdict attacks seen through aliases, multi-line imports and attribute chains, with the
    right severity, and is correct code left alone?"""
    cases = {
        "get_ipython().input_transformers_cleanup.append(lambda lines: lines)": TAMPERING,
        "ip = get_ipython()\nip.events.register('pre_run_cell', print)": TAMPERING,
        "import sys as s\ns.settrace(print)": TAMPERING,
        "from sys import (\n    _getframe as f,\n)\nf(0)": TAMPERING,
        "import autograder.checks": TAMPERING,
        "import base64 as _b, pickle as _p\n_p.loads(_b.b64decode('AA'))": REVIEW,
        "import marshal\nmarshal.loads(b'')": REVIEW,
        "import ctypes": REVIEW,
        "from pathlib import Path\nPath('helper.py').write_text('x = 1')": REVIEW,
        "name = 'x'\nf = getattr(np, name)": REVIEW,
    }
    for code, severity in cases.items():
        path = tmp_path / NB5
        path.write_bytes((SOURCE / NB5).read_bytes())
        replace_answer(path, "a5_collect_other_frames", "import numpy as np\n" + code)
        found = scan_notebook(path)
        assert found and {f.severity for f in found} == {severity}, (code, [str(f) for f in found])
    fine = [
        "torch.backends.cudnn.benchmark = True",
        "setattr(MyVAE, 'encode', encode)",
        "h = self.encoder(x).view(x.size(0), -1)",
    ]
    for code in fine:
        path = tmp_path / NB5
        path.write_bytes((SOURCE / NB5).read_bytes())
        replace_answer(path, "a5_collect_other_frames", "import torch\n" + code)
        assert scan_notebook(path) == [], code


def test_a_disguised_input_transformer_is_tampering(tampered):
    """Is an input transformer appended to the list behind input_transformers_cleanup, its __module__
    set to IPython's, seen by the scan for what it is: the notebook scores zero and is reported?"""
    assert _earned(tampered, "disguised_transformer") == 0
    problems = tampered["reports"]["disguised_transformer"].summary()
    assert "tampering suspected, its notebook's autograded points set to zero" in problems, problems
    assert "reaches into the IPython shell (get_ipython().input_transformer_manager)" in problems, problems
    assert "disguises where code was defined (__module__ = ...)" in problems, problems
    assert "encodes or decodes hidden data (codecs)" in problems, problems


def test_made_up_records_of_every_check_earn_nothing_and_are_named(tampered):
    """Does a payload that replaces every probe of homework 1 with records of the right structure made
    without an answer (names, dtypes, shapes, a correct answer's statistics, descriptions and logs)
    earn nothing, every cell judged outside the kernel, and is it named?"""
    scores = tampered["scores"]["forges_made_up"]
    assert set(_graded_cells()) <= set(scores) and _earned(tampered, "forges_made_up") == 0, scores
    problems = tampered["reports"]["forges_made_up"].summary()
    assert "for review" in problems and "unpickles data (pickle)" in problems, problems


def test_a_forger_on_top_of_buggy_answers_gains_nothing(tampered):
    """Does a payload that lets the probes of two buggy answers run and doctors their records without
    an answer (outputs clamped into [0, 1], noise of its own with matching gradients) earn exactly what
    the bugs earn: zero on the cells they break, full marks on the others?"""
    broken = set().union(*(HW1_MUTANTS[name].fails for name in DOCTORED_MUTANTS))
    scores = {gid: s for gid, s in tampered["scores"]["doctors_mutants"].items() if gid.startswith(("a1", "a2"))}
    assert {gid for gid, (score, _) in scores.items() if score == 0} == broken, scores
    assert all(score == top for gid, (score, top) in scores.items() if gid not in broken), scores
    problems = tampered["reports"]["doctors_mutants"].summary()
    assert "for review" in problems and "unpickles data (pickle)" in problems, problems


def _graded_cells() -> set[str]:
    """The grade_ids of homework 1's hidden checks, all three notebooks."""
    from answers import hidden_calls

    return {gid for notebook in (NB1, NB3, NB5) for gid in hidden_calls(ASSIGNMENT, notebook)}
