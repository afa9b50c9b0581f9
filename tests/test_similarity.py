"""Similarity review (``course similarity``): renamed and reformatted copies are found, independent
answers and the release's own code are not.

The submissions are real notebooks: the source notebooks of ``hw1_vae`` with their answer cells
replaced (:func:`autograder.submissions.replace_answer`) by the released stubs, the reference answers,
the correct answers written differently (``HW1_ALTERNATIVES``), mutants, and copies of answers with
other names and layout. Nothing is graded, so the module takes seconds.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from autograder import cli, course, similarity
from autograder.course import PipelineError
from autograder.submissions import copy_notebooks, replace_answer
from autograder.submissions.hw1_vae import HW1_ALTERNATIVES, HW1_MUTANTS, NB1, NB3, NB5

ASSIGNMENT = "hw1_vae"
SOURCE = course.source_dir(ASSIGNMENT)
RELEASE = similarity.released_cells(ASSIGNMENT)

#: a3 of the reference, renamed (variables), reformatted (layout, quotes, comments) and with its
#: first three statements, which do not depend on each other, in another order.
A3_DISGUISED = '''
def collect_frames(env: gym.Env, n_frames: int, episode_length: int = 20, seed: int | None = None) -> np.ndarray:
    """Random-action frames, at most episode_length per episode: uint8 (n_frames, 64, 64, 3)."""
    env.action_space.seed(seed)   # actions first
    obs, _info = env.reset(seed = seed)
    images = np.zeros(
        (n_frames, 64, 64, 3),
        dtype=np.uint8,
    )
    steps = 0
    for k in range(n_frames):
        # one frame per step
        images[k] = preprocess_frame(frame_of(env, obs), 'CartPole-v1')
        obs, r, done, cut, _info = env.step(env.action_space.sample())
        steps += 1
        if steps == episode_length or done or cut:
            obs, _info = env.reset()

            steps = 0
    return images
'''

#: a5 written by one student with a helper function of their own ...
A5_WITH_HELPER = '''
def crop_for(name):
    """The crop that keeps the moving parts of the environment."""
    if name == "Pendulum-v1":
        return Crop(top=0.22, bottom=0.78, left=0.22, right=0.78)
    if name == "Acrobot-v1":
        return Crop(top=0.05, bottom=0.95, left=0.05, right=0.95)
    return Crop(top=0.15, bottom=1.0)


def collect_other_frames(env_id: str, n_frames: int, seed: int | None = None) -> np.ndarray:
    """Random-action frames of env_id with a suitable crop: uint8 (n_frames, 64, 64, 3)."""
    crop = crop_for(env_id)
    env = make_env(env_id, seed=seed)
    env.action_space.seed(seed)
    observation, info = env.reset(seed=seed)
    frames = []
    while len(frames) < n_frames:
        frames.append(preprocess_frame(frame_of(env, observation), crop))
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            observation, info = env.reset()
    env.close()
    return np.stack(frames).astype(np.uint8)
'''

#: ... and copied by another, the helper function and the variables renamed, the layout changed.
A5_HELPER_COPIED = '''
def _choose_crop(environment):
    if environment == 'Pendulum-v1':
        return Crop(top=0.22, bottom=0.78, left=0.22, right=0.78)
    if environment == 'Acrobot-v1': return Crop(top=0.05, bottom=0.95, left=0.05, right=0.95)
    return Crop(top=0.15, bottom=1.0)

def collect_other_frames(env_id: str, n_frames: int, seed: int | None = None) -> np.ndarray:
    """Random-action frames of env_id with a suitable crop: uint8 (n_frames, 64, 64, 3)."""
    c = _choose_crop(env_id)
    e = make_env(env_id, seed=seed)
    e.action_space.seed(seed)
    o, _ = e.reset(seed=seed)
    out = []
    while len(out) < n_frames:
        out.append(preprocess_frame(frame_of(e, o), c))  # keep it
        o, rew, term, trunc, _ = e.step(e.action_space.sample())
        if term or trunc:
            o, _ = e.reset()
    e.close()
    return np.stack(out).astype(np.uint8)
'''


def _source_answers() -> dict[tuple[str, str], str]:
    """The reference answers: ``{(notebook, grade_id): source}`` of the source notebooks' answer cells."""
    answers = {}
    for (notebook, grade_id), _ in RELEASE.cells.items():
        nb = nbformat.read(SOURCE / notebook, as_version=4)
        answers[notebook, grade_id] = similarity.answer_cells(nb)[grade_id]
    return answers


REFERENCE = _source_answers()


def _renamed(code: str, names: dict[str, str]) -> str:
    """``code`` with each identifier of ``names`` (whole words) renamed."""
    for old, new in names.items():
        code = re.sub(rf"\b{old}\b", new, code)
    return code


def _student(dest: Path, answers: dict[tuple[str, str], str]) -> Path:
    """A submission: the source notebooks with every answer cell blank (as released) but ``answers``."""
    copy_notebooks(SOURCE, dest)
    for (notebook, grade_id), released in RELEASE.cells.items():
        replace_answer(dest / notebook, grade_id, answers.get((notebook, grade_id), released))
    return dest


def _provided_code_only(released: str) -> str:
    """A released cell kept by a student who deleted the stub and reformatted the provided code."""
    kept = [line for line in released.splitlines() if "NotImplementedError" not in line and "YOUR CODE" not in line]
    return "\n".join(line.replace(", ", ",  ") for line in kept) + "\n    pass"


A1_RENAMES = {"modules": "layers", "in_dim": "c_in", "h_dim": "c_out", "h0": "first"}
A1_KEY, A3_KEY = (NB1, "a1_myvae"), (NB3, "a3_collect_frames")
A4_KEY, A5_KEY = (NB3, "a4_collect_upright_frames"), (NB5, "a5_collect_other_frames")


@pytest.fixture(scope="module")
def submissions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per student (``course autograde``'s layout)."""
    root = tmp_path_factory.mktemp("submissions")
    a4_mutant = HW1_MUTANTS["a4_angle_of_the_previous_state"]
    a3_mutant = HW1_MUTANTS["a3_reset_one_frame_early"]
    students = {
        "reference": {key: REFERENCE[key] for key in (A1_KEY, A3_KEY)},
        # the reference's a1 with other variable names and comments, and its a3 disguised
        "copier": {
            A1_KEY: _renamed(REFERENCE[A1_KEY], A1_RENAMES).replace("),\n", "),  # next\n").replace(", ", " ,"),
            A3_KEY: A3_DISGUISED,
        },
        "alternatives": dict(HW1_ALTERNATIVES),
        "mutant_a3": {A3_KEY: a3_mutant.code},
        "mutant_a4": {A4_KEY: a4_mutant.code},
        "helper_author": {A5_KEY: A5_WITH_HELPER},
        "helper_copier": {A5_KEY: A5_HELPER_COPIED},
        "blank": {},
        "provided_only": {key: _provided_code_only(code) for key, code in RELEASE.cells.items()},
    }
    for name, answers in students.items():
        _student(root / name, answers)
    return root


@pytest.fixture(scope="module")
def review(submissions: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``course similarity`` over the submissions, at the default threshold: the JSON it wrote."""
    out = tmp_path_factory.mktemp("out")
    assert cli.main(["similarity", ASSIGNMENT, "--out", str(out), "--submissions", str(submissions)]) == 0
    return json.loads((out / "similarity.json").read_text())


def _pair(review: dict, a: str, b: str) -> dict | None:
    return next((p for p in review["pairs"] if {p["a"], p["b"]} == {a, b}), None)


def _students_in_pairs(review: dict) -> set[str]:
    return {p["a"] for p in review["pairs"]} | {p["b"] for p in review["pairs"]}


def test_renamed_and_reformatted_copies_are_found(review: dict) -> None:
    """Are answers copied with other variable names, other layout, comments and reordered statements
    found, cell by cell, with a score of 1?"""
    pair = _pair(review, "copier", "reference")
    assert pair is not None, review["pairs"]
    cells = {c["cell"]: c["score"] for c in pair["cells"]}
    assert set(cells) == {"a1_myvae", "a3_collect_frames"}
    assert cells["a1_myvae"] == 1.0  # renaming and layout change nothing
    assert cells["a3_collect_frames"] == 1.0  # n-grams do not span statements: moving one changes none


def test_renamed_helper_function_is_found(review: dict) -> None:
    """Is an answer with a helper function of its own found when copied with the function renamed?"""
    pair = _pair(review, "helper_author", "helper_copier")
    assert pair is not None, review["pairs"]
    assert [c["cell"] for c in pair["cells"]] == ["a5_collect_other_frames"]
    assert pair["score"] >= 0.9


def test_independent_answers_are_not_flagged(review: dict) -> None:
    """Are correct answers written independently (the alternatives against the reference, the copies
    and everyone else) and mutants of different cells left out of every pair?"""
    assert "alternatives" not in _students_in_pairs(review)
    assert _pair(review, "mutant_a3", "mutant_a4") is None
    # a mutant is the reference's code with a bug: alike by construction, so listed with it
    assert _pair(review, "mutant_a3", "reference") is not None
    assert _pair(review, "helper_author", "reference") is None


def test_release_code_is_not_similarity(review: dict) -> None:
    """Is a submission that is the blank release, or only the provided code reformatted, similar to
    nobody (the release's code is taken out before comparing)?"""
    assert {"blank", "provided_only"}.isdisjoint(_students_in_pairs(review))


def test_provided_code_of_a_long_cell_is_not_similarity(tmp_path: Path) -> None:
    """In homework 2, whose model cell provides five method heads with their docstrings, are the blank
    release and the provided code alone (stubs deleted, layout changed) similar to nobody, while the
    same cells with the reference's answers are?"""
    release = similarity.released_cells("hw2_world_models")
    source = course.source_dir("hw2_world_models")
    for student, answer in {"blank_1": str, "blank_2": str, "provided_only": _provided_code_only}.items():
        copy_notebooks(source, tmp_path / student)
        for (notebook, grade_id), released in release.cells.items():
            replace_answer(tmp_path / student / notebook, grade_id, answer(released))
    copy_notebooks(source, tmp_path / "reference_1")
    copy_notebooks(source, tmp_path / "reference_2")
    result = similarity.review("hw2_world_models", tmp_path / "out", tmp_path)
    assert [(p["a"], p["b"]) for p in result["pairs"]] == [("reference_1", "reference_2")]


def test_short_answers_are_not_compared(review: dict) -> None:
    """Are answer cells too short to tell copying from chance (a2's one-liners, identical in the
    reference and the copier) never listed?"""
    listed = {c["cell"] for p in review["pairs"] for c in p["cells"]}
    assert listed.isdisjoint({"a2_reparameterize", "a2_encode", "a2_forward"})
    one_liner = "@add_to_class(MyVAE)\ndef reparameterize(self, mu, logvar):\n    return mu + torch.exp(0.5 * logvar)"
    assert not similarity.normalize_answer(one_liner, RELEASE.cells[NB1, "a2_reparameterize"]).fingerprints


def test_schema(review: dict) -> None:
    """Does similarity.json have exactly the documented keys and types, pairs sorted by score, and
    answers shown without the release's code?"""
    assert set(review) == {"assignment", "threshold", "students", "against", "earlier_students", "pairs"}
    assert review["against"] == [] and review["earlier_students"] == 0
    assert review["assignment"] == ASSIGNMENT
    assert review["threshold"] == similarity.DEFAULT_THRESHOLD
    assert review["students"] == 9
    scores = [p["score"] for p in review["pairs"]]
    assert scores == sorted(scores, reverse=True) and scores
    for pair in review["pairs"]:
        assert set(pair) == {"a", "b", "score", "earlier", "cells"} and pair["earlier"] is False
        assert isinstance(pair["a"], str) and isinstance(pair["b"], str) and pair["a"] < pair["b"]
        assert pair["score"] == max(c["score"] for c in pair["cells"]) >= review["threshold"]
        for cell in pair["cells"]:
            assert set(cell) == {"notebook", "cell", "score", "answer_a", "answer_b", "matched_a", "matched_b"}
            assert (cell["notebook"], cell["cell"]) in RELEASE.cells
            assert isinstance(cell["score"], float) and review["threshold"] <= cell["score"] <= 1.0
            for answer in (cell["answer_a"], cell["answer_b"]):
                assert isinstance(answer, str) and answer
    shown = _pair(review, "copier", "reference")["cells"]
    a1 = next(c for c in shown if c["cell"] == "a1_myvae")
    reference = a1["answer_a"] if _pair(review, "copier", "reference")["a"] == "reference" else a1["answer_b"]
    assert "layers = []" not in reference and "modules = []" in reference
    for given in ("class MyVAE", "super().__init__()", "self.build_decoder()", "BEGIN SOLUTION", "YOUR CODE"):
        assert given not in reference  # provided code, the stub and the solution markers are the release's


def test_unparseable_answers_fall_back_to_tokens() -> None:
    """Is an answer that does not parse compared by its tokens, so that its renamed copy is found and
    an independent answer is not?"""
    released = RELEASE.cells[A3_KEY]
    broken = REFERENCE[A3_KEY].replace("    return frames", "    return frames)")  # a syntax error
    copy = _renamed(broken, {"frames": "images", "frame_idx": "t", "observation": "obs"})
    a, b = (similarity.normalize_answer(code, released, RELEASE.markers) for code in (broken, copy))
    other = similarity.normalize_answer(HW1_ALTERNATIVES[A3_KEY] + ")", released)
    assert a.fingerprints and similarity.jaccard(a.fingerprints, b.fingerprints) >= 0.9  # the docstring changed too
    assert similarity.jaccard(a.fingerprints, other.fingerprints) < similarity.DEFAULT_THRESHOLD
    assert "def collect_frames" not in a.text and "SOLUTION" not in a.text  # the release's lines are not shown


def test_graded_submissions_are_read_by_default(submissions: Path, tmp_path: Path, capsys) -> None:
    """Without --submissions, are the graded submissions in OUT/course/submitted/<student>/<assignment>/
    compared, and the pairs printed?"""
    for student in ("reference", "copier", "blank"):
        shutil.copytree(submissions / student, course.step_dir(tmp_path / "course", "submitted", student, ASSIGNMENT))
    broken = course.step_dir(tmp_path / "course", "submitted", "broken", ASSIGNMENT)
    broken.mkdir(parents=True)
    (broken / NB1).write_text("not a notebook")  # compared as having no answers
    assert cli.main(["similarity", ASSIGNMENT, "--out", str(tmp_path), "--threshold", "0.9"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^copier  reference  1\.00  01_autoencoder_and_vae\.ipynb:a1_myvae 1\.00", printed, re.M)
    result = json.loads((tmp_path / "similarity.json").read_text())
    assert result["students"] == 4 and result["threshold"] == 0.9
    assert [(p["a"], p["b"]) for p in result["pairs"]] == [("copier", "reference")]


def test_bad_input_is_explained(tmp_path: Path) -> None:
    """Are a missing run, an empty submissions folder and a threshold outside (0, 1] refused with a
    message that says what was expected?"""
    with pytest.raises(PipelineError, match="run `course autograde` first or pass --submissions"):
        similarity.review(ASSIGNMENT, tmp_path)
    with pytest.raises(PipelineError, match="must be in"):
        similarity.review(ASSIGNMENT, tmp_path, tmp_path, threshold=1.5)
    assert cli.main(["similarity", ASSIGNMENT, "--out", str(tmp_path), "--submissions", str(tmp_path)]) == 2


def _marked(answer: str, ranges: list[list[int]]) -> list[str]:
    """The lines of ``answer`` in the ``[first, last]`` ranges, stripped."""
    lines = answer.split("\n")
    return [lines[n - 1].strip() for first, last in ranges for n in range(first, last + 1)]


def test_matched_statements_are_the_shared_ones() -> None:
    """Does the side-by-side view mark every statement of a renamed copy, and in an answer that copies
    half of the reference and writes the rest its own way, only the copied half?"""
    released = RELEASE.cells[A3_KEY]
    reference = similarity.normalize_answer(REFERENCE[A3_KEY], released, RELEASE.markers)
    copy = similarity.normalize_answer(A3_DISGUISED, released, RELEASE.markers)
    marked = _marked(copy.text, similarity.matched_lines(copy, reference))
    code = [line.strip() for line in copy.text.split("\n") if line.strip() and not line.strip().startswith("#")]
    assert [line for line in code if line not in marked] == []  # every statement, its lines in the text shown
    # the first half copied (renamed), then a loop of its own: only the copied statements are marked
    own_loop = """
    while len(collected) < n_frames:
        collected.append(preprocess_frame(env.render(), "CartPole-v1"))
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        t += 1
        if t >= episode_length or term or trunc:
            obs, _ = env.reset()
            t = 0
    return np.stack(collected).astype(np.uint8)
"""
    head = A3_DISGUISED.split("    steps = 0")[0]
    half = similarity.normalize_answer(head + "    collected, t = [], 0" + own_loop, released, RELEASE.markers)
    marked = _marked(half.text, similarity.matched_lines(half, reference))
    assert "env.action_space.seed(seed)   # actions first" in marked and "obs, _info = env.reset(seed = seed)" in marked
    assert not [line for line in marked if "collected" in line or "term or trunc" in line]


@pytest.mark.parametrize("layout", ["graded run", "one folder per student"])
def test_earlier_terms_are_compared_with_this_terms_students(
    submissions: Path, tmp_path: Path, capsys, layout: str
) -> None:
    """With --against, is this term's copy of an earlier term's answer found and named
    ``<archive>/<student>``, its matched lines given, and are the earlier students not compared with
    each other (two identical archived answers make no pair)?"""
    archive = tmp_path / "2025-fall"
    for student, source in (("alumna", "reference"), ("alumna_twin", "reference")):
        graded = course.step_dir(archive / "course", "submitted", student, ASSIGNMENT)
        dest = graded if layout == "graded run" else archive / student
        shutil.copytree(submissions / source, dest)
    out = tmp_path / "now"
    run = tmp_path / "this_term"
    for student in ("copier", "alternatives"):
        shutil.copytree(submissions / student, run / student)
    args = ["similarity", ASSIGNMENT, "--out", str(out), "--submissions", str(run), "--against", str(archive)]
    assert cli.main(args) == 0
    result = json.loads((out / "similarity.json").read_text())
    assert result["against"] == ["2025-fall"] and result["earlier_students"] == 2 and result["students"] == 2
    pairs = {(p["a"], p["b"]): p for p in result["pairs"]}
    assert set(pairs) == {("copier", "2025-fall/alumna"), ("copier", "2025-fall/alumna_twin")}
    for pair in pairs.values():
        assert pair["earlier"] is True and {c["cell"] for c in pair["cells"]} == {"a1_myvae", "a3_collect_frames"}
        for cell in pair["cells"]:
            assert cell["matched_a"] and cell["matched_b"]
    assert "copier  2025-fall/alumna (earlier term)  1.00" in capsys.readouterr().out
    with pytest.raises(PipelineError, match=r"--against .*expected the --out folder"):
        similarity.review(ASSIGNMENT, out, run, against=(tmp_path / "empty_archive",))
