"""The hidden checks: declared once per test cell, probed in the kernel, judged in the grader.

These tests run the probes on known answers in-process (as a kernel would, with a nonce), pass the
records through their JSON encoding and judge them, as :mod:`autograder.judging` does in nbgrader's
process; the whole path through nbgrader is exercised by ``tests/test_grading.py``,
``tests/test_grading_hw2.py`` and ``tests/test_tamper.py``.
"""

from __future__ import annotations

import ast
import base64
import copy
import importlib
import inspect
import json
import pkgutil
import secrets
import time

import nbformat
import numpy as np
import pytest
import torch
from answers import graded, hidden_calls, namespace, record_of, training_cell
from nbformat.v4 import new_code_cell

from autograder import checks, judging, records
from autograder.checks import CheckFailed, hw1_vae, hw2_world_models, seed_of
from autograder.checks.hw1_vae import rebuild
from autograder.checks.hw2_world_models import matching
from autograder.course import notebook_names, source_dir
from autograder.submissions.hw1_vae import HW1_ALTERNATIVES, HW1_MUTANTS
from autograder.submissions.hw2_world_models import FLOOR_AFTER_MEAN_BUG, HW2_ALTERNATIVES, HW2_MUTANTS, W1

ASSIGNMENTS = ("hw1_vae", "hw2_world_models")
NOTEBOOKS = [(a, nb) for a in ASSIGNMENTS for nb in notebook_names(a)]
#: Checks that train a model for seconds: run for a mutant only when it targets them.
SLOW = {"a1_loss_drops", "a5_beats_baseline"}
MUTANTS = {**HW1_MUTANTS, **HW2_MUTANTS}


def _graded_cells() -> list[tuple[str, str, nbformat.NotebookNode]]:
    out = []
    for assignment, notebook in NOTEBOOKS:
        for cell in nbformat.read(source_dir(assignment) / notebook, as_version=4).cells:
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
                out.append((assignment, notebook, cell))
    return out


# ---------------------------------------------------------------- one registry
def test_every_test_cell_calls_the_check_named_after_its_grade_id():
    """Does every graded code cell call, once, a declared check named after its grade_id, with a judge?"""
    cells = _graded_cells()
    assert len(cells) >= 20
    for _, notebook, cell in cells:
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        check = checks.find(grade_id)
        assert check is not None and check.decide is not None, (notebook, grade_id)
        armed = judging.write_nonce(cell.source, grade_id, "ab" * 8)
        assert armed.count("nonce='abababababababab'") == 1, armed
        ast.parse(armed)


def test_every_declared_check_is_called_by_a_test_cell():
    """Is every check of the registry the test of some cell (no check left over)?"""
    called = {cell.metadata["nbgrader"]["grade_id"] for _, _, cell in _graded_cells()}
    assert set(checks.registry()) == called


def test_a_grade_id_is_declared_once_and_named_after_its_probe():
    """Are a second declaration of a grade_id and a probe named otherwise refused?"""

    def a1_structure(inputs):
        return {}

    with pytest.raises(ValueError, match="declared twice"):
        checks.check("a1_structure", inputs=lambda seed: {})(a1_structure)
    with pytest.raises(ValueError, match="name it after its grade_id"):

        @checks.check("not_a_cell", inputs=lambda seed: {})
        def something(inputs):
            return {}


def test_check_modules_load_the_reference_only_inside_judges():
    """Do the check modules leave course_lib.solutions out of their module-level imports (the kernel imports them)?"""
    found = pkgutil.walk_packages(checks.__path__, prefix="autograder.checks.")
    modules = [checks, *(importlib.import_module(m.name) for m in found)]
    assert {"autograder.checks.hw1_vae.vae", "autograder.checks.hw2_world_models.loss"} <= {m.__name__ for m in modules}
    for module in modules:
        tree = ast.parse(inspect.getsource(module))
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        names = [alias.name for n in top for alias in n.names] + [getattr(n, "module", "") or "" for n in top]
        assert not [n for n in names if "solutions" in n], (module.__name__, names)


# ---------------------------------------------------------------- records
def test_record_round_trip_keeps_dtypes_shapes_texts_and_nonce():
    """Does a record give back the arrays, scalars, texts, nonce and notes it was made of?"""
    values = {
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "frames": np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        "mu": torch.randn(3, 5),
        "flag": True,
        "count": np.int64(7),
        "layers": json.dumps({"encoder": "Sequential"}),
    }
    grade_id, nonce, decoded, notes = records.decode(json.loads(json.dumps(records.encode("a", "00ff", values, ["x"]))))
    assert (grade_id, nonce, notes) == ("a", "00ff", ["x"])
    assert decoded["scalar"].shape == () and decoded["scalar"] == 2.5
    np.testing.assert_array_equal(decoded["frames"], values["frames"])
    np.testing.assert_array_equal(decoded["mu"], values["mu"].numpy())
    assert decoded["flag"].dtype == bool and decoded["flag"] and decoded["count"] == 7
    assert json.loads(decoded["layers"]) == {"encoder": "Sequential"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["values"]["a"].update(dtype="object"), "dtype"),
        (lambda r: r["values"]["a"].update(shape=[5]), "bytes do not make"),
        (lambda r: r["values"]["a"].update(shape="3"), "not a list of sizes"),
        (lambda r: r["values"]["a"].update(data="%%%"), "not base64"),
        (lambda r: r["values"]["a"].update(shape=[4001, 2000]), "more than"),
        (lambda r: r["values"].update(t={"text": 5}), "text must be a string"),
        (lambda r: r.update(values=[1, 2]), "'values' dict"),
        (lambda r: r.update(nonce=3), "nonce must be a string"),
        (lambda r: r.update(notes="x"), "notes must be a list"),
        (lambda r: r.pop("grade_id"), "'grade_id'"),
    ],
)
def test_malformed_records_are_refused(edit, message):
    """Is a record that is not what `encode` writes refused with a RecordError saying why?"""
    record = records.encode("a", "00ff", {"a": np.zeros(3, np.float32)})
    edit(record)
    with pytest.raises(records.RecordError, match=message):
        records.decode(record)


# ---------------------------------------------------------------- nonces in test cells
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("checks.a1_images()", "checks.a1_images(nonce='00aa')"),
        ("x = 1\nchecks.a1_images(MyVAE)\n", "x = 1\nchecks.a1_images(MyVAE, nonce='00aa')\n"),
        ("checks.a1_images(\n    model,\n    frames,\n)", "checks.a1_images(model, frames, nonce='00aa')"),
        ("c.a1_images(m, k=1)  # é", "c.a1_images(m, k=1, nonce='00aa')  # é"),
    ],
)
def test_the_grader_writes_its_nonce_into_the_check_call(source, expected):
    """Is the nonce added to the one call of the cell's check, whatever its arguments and layout?"""
    assert judging.write_nonce(source, "a1_images", "00aa") == expected


def test_a_cell_that_does_not_call_its_check_once_is_not_armed():
    """Is a test cell calling its check twice, or not at all, refused by write_nonce (a course bug)?"""
    with pytest.raises(ValueError, match="2 times"):
        judging.write_nonce("c.a1_x(1)\nc.a1_x(2)", "a1_x", "00aa")
    cell = new_code_cell("assert True", metadata={"nbgrader": {"grade": True, "grade_id": "a1_x"}})
    assert judging.arm(cell) is None and cell.source == "assert True"


# ---------------------------------------------------------------- known answers, in-process
@pytest.mark.parametrize(("assignment", "notebook"), NOTEBOOKS)
def test_the_source_answers_pass_every_check(assignment, notebook):
    """Do the source notebook's own answers pass every hidden check of the notebook?"""
    ns = namespace(assignment, notebook)
    for grade_id, names in hidden_calls(assignment, notebook).items():
        if "model" in names:
            ns["model"] = training_cell(ns)["model"]
        assert graded(grade_id, *(ns[n] for n in names)) is None, grade_id


@pytest.mark.parametrize(("assignment", "notebook"), NOTEBOOKS)
def test_answers_written_differently_pass(assignment, notebook):
    """Do correct answers in other idioms (other names, layers, libraries, reductions, .view) pass?"""
    alternatives = {**HW1_ALTERNATIVES, **HW2_ALTERNATIVES}
    replace = {grade_id: code for (nb, grade_id), code in alternatives.items() if nb == notebook}
    assert replace, f"no alternative answer for {notebook}"
    ns = namespace(assignment, notebook, replace)
    for grade_id, names in hidden_calls(assignment, notebook).items():
        if grade_id in SLOW:
            continue
        assert graded(grade_id, *(ns[n] for n in names)) is None, grade_id


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_each_mutant_fails_exactly_its_cells(name):
    """Does each classic bug fail the graded cells it breaks, and pass the other cells of its notebook?"""
    mutant = MUTANTS[name]
    assignment = "hw1_vae" if name in HW1_MUTANTS else "hw2_world_models"
    ns = namespace(assignment, mutant.notebook, {mutant.answer: mutant.code})
    failed = set()
    for grade_id, names in hidden_calls(assignment, mutant.notebook).items():
        if grade_id not in mutant.fails and (grade_id in SLOW or not set(names) & _defined_by(mutant.code)):
            continue  # a check that does not get what the mutant changed, or a slow one it does not target
        if "model" in names:
            ns["model"] = training_cell(ns)["model"]
        if graded(grade_id, *(ns[n] for n in names)) is not None:
            failed.add(grade_id)
    assert failed == mutant.fails


def _defined_by(code: str) -> set[str]:
    """Names an answer cell defines or changes: its classes and functions, and the classes it adds methods to."""
    names = set()
    for node in ast.parse(code).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
            for decorator in getattr(node, "decorator_list", []):
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "add_to_class":
                    names.update(arg.id for arg in decorator.args if isinstance(arg, ast.Name))
    return names


def test_every_graded_cell_has_a_mutant():
    """Does every graded cell of both homeworks have a mutant that fails it?"""
    targeted = set().union(*(m.fails for m in MUTANTS.values()))
    assert {cell.metadata["nbgrader"]["grade_id"] for _, _, cell in _graded_cells()} <= targeted


def test_a_shipped_checkpoint_is_not_a_trained_answer():
    """Does activity 5 refuse the shipped pretrained SmallVAE of its environment, which beats the
    baseline, in place of the student's own training (and keep the student's own model)?"""
    from course_lib import pretrained

    notebook = HW1_MUTANTS["a5_seed_ignored"].notebook
    ns = namespace("hw1_vae", notebook)
    names = hidden_calls("hw1_vae", notebook)["a5_beats_baseline"]
    env_name = next(n for n in names if n not in ("model", "collect_other_frames"))
    ns[env_name] = "Pendulum-v1"
    ns["model"] = pretrained.load("small_vae_pendulum")
    message = graded("a5_beats_baseline", *(ns[n] for n in names))
    assert message is not None and "small_vae_pendulum" in message and "you train" in message
    torch.manual_seed(0)
    ns["model"].load_state_dict(
        {k: v + 0.05 * v.std() * torch.randn_like(v) for k, v in ns["model"].state_dict().items()}
    )
    assert "pretrained" not in (graded("a5_beats_baseline", *(ns[n] for n in names)) or "")


@pytest.mark.parametrize("seeds", [(1026, 2026), (1036, 2036)])
def test_the_notebook_settings_beat_the_baseline_on_other_frames(seeds):
    """Do activity 5's default settings beat the mean image by a margin when the frames are not the
    notebook's own (a correct collector written another way, or one that ignores its seed, draws
    others)? On these two draws a learning rate of 2e-3 made the loss jump and fall back to the mean
    image (ratio 0.98 and 1.00), in about 1 draw in 20."""
    ns = namespace("hw1_vae", HW1_MUTANTS["a5_seed_ignored"].notebook)
    run = training_cell(ns, seeds)
    ratio = run["baseline"] / run["val_mse"]
    assert ratio > 2, f"the trained VAE is only {ratio:.2f}x better than the mean image"


@pytest.mark.parametrize("grade_id", ["a2_reparameterize_stats", "a3_frames", "w1_sampling", "w2_kl_floor"])
def test_correct_answers_pass_whatever_the_grading_run_draws(grade_id):
    """Does the reference pass for several random nonces (inputs drawn per grading run)?"""
    assignment, notebook = next((a, nb) for a, nb in NOTEBOOKS if grade_id in hidden_calls(a, nb))
    ns = namespace(assignment, notebook)
    names = hidden_calls(assignment, notebook)[grade_id]
    for _ in range(3):
        assert graded(grade_id, *(ns[n] for n in names), nonce=secrets.token_hex(8)) is None


@pytest.mark.parametrize("grade_id", ["w1_parameter_count", "w1_architecture", "w1_encode_decode"])
def test_the_drawn_latent_size_is_never_the_default(grade_id):
    """Does every grading run draw a second latent size other than the default 32, so that a latent
    size hard-coded to 32 can never pass by the luck of the draw?"""
    inputs = checks.find(grade_id).inputs
    drawn = set()
    for seed in range(2000):
        drawn_inputs = inputs(seed)
        sizes = drawn_inputs.get("z_sizes") or [z for z, _ in drawn_inputs["cases"]]
        assert sizes[0] == 32
        drawn.update(sizes[1:])
    assert 32 not in drawn and len(drawn) > 5, sorted(drawn)


def test_forward_is_judged_to_resample_by_the_z_it_decodes_not_by_its_output():
    """Does a MyVAE whose ReLU output layer gives all zeros for some decoder initialisations (global
    seeds 5 and 8: both calls of forward return the same x_hat from different z) still pass
    a2_encode_forward, which it does not break? Judged on x_hat, it failed about 1 run in 10."""
    mutant = HW1_MUTANTS["a1_relu_output"]
    ns = namespace("hw1_vae", mutant.notebook, {mutant.answer: mutant.code})
    for global_seed in (5, 8):
        torch.manual_seed(global_seed)  # the decoder layers the check does not load are initialised from it
        assert graded("a2_encode_forward", ns["MyVAE"], seed=0) is None


def test_a_correct_forward_passes_w1_sampling_on_an_unlikely_draw_of_noise():
    """Does a correct ConvVAE pass w1_sampling on draws whose forward noise (128 x 32 values) has a
    mean 3.3 to 3.8 standard errors from 0 (1 draw in 700 is that far), so that the judge's thresholds
    stay six standard errors wide as the sampling checks promise?"""
    ns = namespace("hw2_world_models", W1)
    for seed in (993, 3422):
        assert graded("w1_sampling", ns["ConvVAE"], seed=seed) is None


def test_messages_say_what_was_expected_without_the_drawn_inputs():
    """Does a failure message explain the bug without quoting the inputs drawn for the grading run?"""
    ns = namespace(
        "hw1_vae",
        HW1_MUTANTS["a2_logvar_as_logsigma"].notebook,
        {"a2_reparameterize": HW1_MUTANTS["a2_logvar_as_logsigma"].code},
    )
    nonce = secrets.token_hex(8)
    message = graded("a2_reparameterize_stats", ns["MyVAE"], nonce=nonce)
    assert message is not None and "exp(logvar / 2), not exp(logvar)" in message
    inputs = hw1_vae.a2_reparameterize_stats.inputs(seed_of(nonce))
    for value in (*inputs["mu"], *inputs["std"]):
        assert f"{value:.2f}" not in message


# ---------------------------------------------------------------- judging in the grader's process
def _test_cell(grade_id: str, call: str) -> nbformat.NotebookNode:
    source = f"from autograder.checks import hw2_world_models as checks\n{call}"
    return new_code_cell(source, metadata={"nbgrader": {"grade": True, "grade_id": grade_id, "points": 1}})


def _ran(cell: nbformat.NotebookNode, *payloads: object, error: bool = False) -> judging.Armed:
    """Arm ``cell`` as the grader does, then give it outputs as if it had run."""
    armed = judging.arm(cell)
    assert armed is not None
    cell.source = armed.source
    cell.outputs = [
        nbformat.from_dict({"output_type": "display_data", "data": {records.MIME: p}, "metadata": {}}) for p in payloads
    ]
    if error:
        cell.outputs.append(
            nbformat.from_dict({"output_type": "error", "ename": "ValueError", "evalue": "", "traceback": []})
        )
    return armed


@pytest.fixture(scope="module")
def vae_loss():
    return namespace("hw2_world_models", "02_vae_loss.ipynb")["vae_loss"]


def _judged(cell, armed, outcomes: list | None = None) -> tuple[list[str], list[judging.Finding]]:
    findings, outcome = judging.judge_cell(cell, armed, "02_vae_loss.ipynb")
    if outcomes is not None:
        outcomes.append(outcome)
    assert not records.records_in(cell.outputs)  # records never reach the feedback
    failures = [o.evalue for o in cell.outputs if o.output_type == "error" and o.ename == "CheckFailed"]
    assert outcome.cell == armed.grade_id and outcome.passed == (not failures)
    assert outcome.message == (failures[-1][:300] if failures else None)
    return failures, findings


def test_a_correct_record_carrying_the_nonce_passes(vae_loss):
    """Does the record of a correct answer, with the nonce written into its cell, pass without findings?"""
    cell = _test_cell("w2_recon", "checks.w2_recon(vae_loss)")
    armed = judging.arm(cell)
    payload = record_of("w2_recon", vae_loss, nonce=armed.nonce)
    cell.source = armed.source
    cell.outputs = [
        nbformat.from_dict({"output_type": "display_data", "data": {records.MIME: payload}, "metadata": {}})
    ]
    assert _judged(cell, armed) == ([], [])


def test_a_wrong_answer_fails_with_the_judges_hint(vae_loss):
    """Does the floor-after-the-batch-mean bug fail w2_kl_floor, judged outside the kernel, with its hint?"""
    bug = namespace("hw2_world_models", "02_vae_loss.ipynb", {"w2_vae_loss": FLOOR_AFTER_MEAN_BUG})["vae_loss"]
    cell = _test_cell("w2_kl_floor", "checks.w2_kl_floor(vae_loss)")
    armed = judging.arm(cell)
    payload = record_of("w2_kl_floor", bug, nonce=armed.nonce)
    cell.source = armed.source
    cell.outputs = [
        nbformat.from_dict({"output_type": "display_data", "data": {records.MIME: payload}, "metadata": {}})
    ]
    outcomes = []
    failures, findings = _judged(cell, armed, outcomes)
    assert len(failures) == 1 and "floor each sample's KL" in failures[0] and findings == []
    assert outcomes[0].ename == "CheckFailed" and outcomes[0].site.startswith("autograder.checks.hw2_world_models.")


def test_the_failing_test_is_named_by_its_site_not_its_message():
    """Does a CheckFailed name the line of the expect that failed, whatever numbers its message carries?"""
    from autograder.checks import CheckFailed, expect

    sites = set()
    for value in (1.5, 2.5):
        with pytest.raises(CheckFailed) as err:
            expect(False, f"off by {value}")
        sites.add(err.value.site)
    assert len(sites) == 1 and sites.pop().startswith(f"{__name__}:")


@pytest.mark.parametrize(
    ("forge", "message"),
    [
        ("nothing", "left no record of its hidden check although it raised nothing"),
        ("twice", "left 2 records"),
        ("stale nonce", "does not carry this run's nonce"),
        ("other cell", "does not carry this run's nonce"),
        ("malformed", "malformed probe record"),
        ("value missing", "does not write"),
        ("values changed", None),
    ],
)
def test_forged_missing_and_repeated_records_earn_nothing_and_are_reported(vae_loss, forge, message):
    """Does a test cell whose record is missing, repeated, stale, foreign, malformed, incomplete or
    changed fail, and is every case but the changed values (a wrong answer) reported for review?"""
    cell = _test_cell("w2_recon", "checks.w2_recon(vae_loss)")
    armed = judging.arm(cell)
    good = record_of("w2_recon", vae_loss, nonce=armed.nonce)
    forged = copy.deepcopy(good)
    payloads = {
        "nothing": [],
        "twice": [good, good],
        "stale nonce": [record_of("w2_recon", vae_loss, nonce="0123456789abcdef")],
        "other cell": [{**good, "grade_id": "w2_kl_floor"}],
        "malformed": [{"grade_id": 1}],
        "value missing": [{**good, "values": {k: v for k, v in good["values"].items() if k != "single"}}],
    }
    if forge == "values changed":
        entry = forged["values"]["recon_0"]
        value = np.frombuffer(base64.b64decode(entry["data"]), dtype=np.float64) * 1.01
        entry["data"] = base64.b64encode(value.tobytes()).decode()
        payloads[forge] = [forged]
    cell.source = armed.source
    cell.outputs = [
        nbformat.from_dict({"output_type": "display_data", "data": {records.MIME: p}, "metadata": {}})
        for p in payloads[forge]
    ]
    failures, findings = _judged(cell, armed)
    assert len(failures) == 1
    if message is None:
        assert findings == [] and "recon is" in failures[0]
    else:
        assert [f.severity for f in findings] == ["tampering"] and message in findings[0].message
        assert "reported for review" in failures[0]


def test_a_cell_that_raised_is_not_judged_and_loses_its_records(vae_loss):
    """Does a test cell that raised keep its error alone: no verdict added, records dropped, no finding?"""
    cell = _test_cell("w2_recon", "checks.w2_recon(vae_loss)")
    armed = _ran(cell, {"grade_id": 1}, error=True)
    findings, outcome = judging.judge_cell(cell, armed, "02_vae_loss.ipynb")
    assert findings == [] and [o.output_type for o in cell.outputs] == ["error"]
    assert (outcome.passed, outcome.ename, outcome.site) == (False, "ValueError", None)


def test_records_outside_test_cells_are_dropped_and_reported(vae_loss):
    """Is a record emitted by a student's cell dropped and reported, its other outputs kept?"""
    cell = new_code_cell("print(1)")
    cell.outputs = [
        nbformat.from_dict({"output_type": "stream", "name": "stdout", "text": "1\n"}),
        nbformat.from_dict(
            {
                "output_type": "display_data",
                "data": {records.MIME: record_of("w2_recon", vae_loss, nonce="ab" * 8)},
                "metadata": {},
            }
        ),
    ]
    findings, outcome = judging.judge_cell(cell, None, "02_vae_loss.ipynb")
    assert outcome is None  # not a graded cell
    assert [o.output_type for o in cell.outputs] == ["stream"]
    assert len(findings) == 1 and "outside a test cell" in findings[0].message


def test_hooks_the_kernel_reports_fail_the_cell_and_are_named(vae_loss):
    """Is an input transformer defined by the notebook found in every list of the shell's input
    transformer manager, named by where its code was defined (not by the __module__ it claims), and
    does a record made beside it fail its cell with a tampering finding?"""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        namespace: dict = {}
        exec(compile("def empty_test_cells(lines):\n    return lines", "/tmp/ipykernel_1/123.py", "exec"), namespace)
        hook = namespace["empty_test_cells"]
        hook.__module__ = "IPython.core.inputtransformer2"
        assert checks.kernel_notes() == []
        shell.input_transformer_manager.cleanup_transforms.append(hook)
        shell.input_transformer_manager.line_transforms.append(hook)
        notes = checks.kernel_notes()
    finally:
        InteractiveShell.clear_instance()
    assert notes == [
        f"input_transformer_manager.{attribute}: empty_test_cells (defined in /tmp/ipykernel_1/123.py)"
        for attribute in ("cleanup_transforms", "line_transforms")
    ]
    cell = _test_cell("w2_recon", "checks.w2_recon(vae_loss)")
    armed = judging.arm(cell)
    payload = record_of("w2_recon", vae_loss, nonce=armed.nonce)
    payload["notes"] = notes
    cell.source = armed.source
    cell.outputs = [
        nbformat.from_dict({"output_type": "display_data", "data": {records.MIME: payload}, "metadata": {}})
    ]
    failures, findings = _judged(cell, armed)
    assert len(failures) == 1 and "ran beside code the notebook installed" in failures[0]
    assert [f.severity for f in findings] == ["tampering"] and "empty_test_cells" in findings[0].message


def test_outside_autograding_the_check_judges_in_the_kernel(vae_loss, monkeypatch):
    """Does an instructor running the source notebook get the judge's verdict in the cell itself?"""
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    bug = namespace("hw2_world_models", "02_vae_loss.ipynb", {"w2_vae_loss": FLOOR_AFTER_MEAN_BUG})["vae_loss"]
    hw2_world_models.w2_recon(vae_loss)
    with pytest.raises(CheckFailed, match="floor each sample"):
        hw2_world_models.w2_kl_floor(bug)


def test_while_autograding_the_kernel_only_emits_the_record(vae_loss, monkeypatch):
    """While nbgrader autogrades, does the check emit one record with the nonce and decide nothing?"""
    shown = []
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.setattr("IPython.display.display", lambda data, raw=False: shown.append(data))
    bug = namespace("hw2_world_models", "02_vae_loss.ipynb", {"w2_vae_loss": FLOOR_AFTER_MEAN_BUG})["vae_loss"]
    hw2_world_models.w2_kl_floor(bug, nonce="cd" * 8)
    assert len(shown) == 1
    grade_id, nonce, _, _ = records.decode(shown[0][records.MIME])
    assert (grade_id, nonce) == ("w2_kl_floor", "cd" * 8)


def test_the_library_loss_is_refused_however_it_is_reached():
    """Does a vae_loss that reaches course_lib's loss by a built name fail, and the library work after?"""
    from course_lib import losses

    ns = {"__name__": "__main__", "losses": losses}
    exec(
        "def vae_loss(x, x_hat, mu, logvar, kl_tolerance=0.5):\n"
        "    out = getattr(losses, 'vae' + '_loss')(x, x_hat, mu, logvar, kl_tolerance=kl_tolerance)\n"
        "    return {k: out[k] for k in ('loss', 'recon', 'kl')}",
        ns,
    )
    message = graded("w2_recon", ns["vae_loss"])
    assert message is not None and "must not call course_lib's loss" in message
    x = torch.rand(2, 3, 64, 64)
    assert float(losses.vae_loss(x, x, torch.zeros(2, 4), torch.zeros(2, 4))["recon"]) == 0.0


def test_the_checks_constants_agree_with_the_reference():
    """Do the parameter counts and layer signatures the checks use agree with the reference answers?"""
    from course_lib.solutions import conv_vae
    from course_lib.solutions import hw1 as reference

    for z_size in (8, 16, 32, 64):
        model = conv_vae.ConvVAE(z_size=z_size)
        expected = matching.N_PARAMS + (z_size - 32) * matching.PARAMS_PER_LATENT
        assert sum(p.numel() for p in model.parameters()) == expected
        assert matching.layers_differ(model, z_size) is None
    assert list(reference.DEFAULT_HIDDEN_DIMS) == rebuild.DEFAULT_HIDDEN_DIMS
    for args in [(3, 10), (3, 6, [8, 16, 32, 64, 128]), (1, 4, [4, 8, 16, 32, 64])]:
        model = reference.MyVAE(*args)
        layers = (model.encoder, model.z_simple, model.z_mu, model.z_var)
        dims = list(args[2]) if len(args) > 2 else rebuild.DEFAULT_HIDDEN_DIMS
        assert rebuild.encoder_parameter_count(args[0], args[1], dims) == sum(
            p.numel() for m in layers for p in m.parameters()
        )


def test_a_judge_past_its_budget_is_stopped_and_fails_its_cell(vae_loss):
    """Is code that runs past the judge's budget stopped, even inside the judge's own ``except Exception``,
    and does the cell it was judging then fail with the reason, its records dropped?"""
    start = time.perf_counter()
    with pytest.raises(judging.JudgeTimeoutError), judging.budget(0.2):
        try:
            while True:  # a judge that never ends
                pass
        except Exception:  # what a judge catches cannot hold the budget back
            pass
    assert time.perf_counter() - start < 5
    cell = _test_cell("w2_recon", "checks.w2_recon(vae_loss)")
    armed = _ran(cell, record_of("w2_recon", vae_loss, nonce="0" * 16))
    outcome = judging.fail_unjudged(cell, armed, "02_vae_loss.ipynb", "could not be judged in time")
    assert not records.records_in(cell.outputs) and outcome.passed is False and outcome.ename == "CheckFailed"
    assert outcome.message == "could not be judged in time"
