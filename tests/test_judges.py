"""The probe/judge split: records from the student's kernel, judged against the reference outside it.

The hidden checks of homework 2 record the student's outputs; :mod:`autograder.judges` compares
them with ``course_lib.solutions`` in the grader's process. These tests produce real records by
running the checks on known answers (as nbgrader's kernel would, with ``NBGRADER_EXECUTION`` set)
and judge them, forged and malformed ones included. The whole path through nbgrader is exercised by
``tests/test_grading_hw2.py``.
"""

from __future__ import annotations

import base64
import inspect
import json

import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell

from autograder import judges, records
from autograder.checks import CheckFailed
from autograder.checks import hw1 as hw1_checks
from autograder.checks import hw2 as checks
from autograder.nbgrader_ext import judge_cell
from autograder.submissions import FLOOR_AFTER_MEAN_BUG
from course_lib.solutions import conv_vae as reference_conv_vae
from course_lib.solutions import hw1 as hw1_reference
from course_lib.solutions import hw2 as reference_hw2

SOURCE = "from autograder.checks import hw2 as checks\nchecks.{}({})"


def _as_student(module, name: str):
    """``name`` from ``module``'s source, defined anew in a namespace named ``__main__`` (as in a notebook)."""
    namespace = {"__name__": "__main__"}
    exec(inspect.getsource(module), namespace)
    return namespace[name]


@pytest.fixture(scope="module")
def conv_vae():
    return _as_student(reference_conv_vae, "ConvVAE")


@pytest.fixture(scope="module")
def vae_loss():
    return _as_student(reference_hw2, "vae_loss")


def _record_of(check: str, answer) -> dict:
    """The record the hidden check ``check`` emits for ``answer`` while nbgrader autogrades."""
    shown = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBGRADER_EXECUTION", "autograde")
        mp.setattr("IPython.display.display", lambda data, raw=False: shown.append(data))
        getattr(checks, check)(answer)
    assert len(shown) == 1 and records.MIME in shown[0], shown
    return shown[0][records.MIME]


def _outputs(*payloads: object) -> list[dict]:
    return [{"output_type": "display_data", "data": {records.MIME: p}, "metadata": {}} for p in payloads]


def test_record_round_trip_keeps_dtypes_and_shapes():
    """Does a record give back the arrays, scalars and tensors it was made of?"""
    values = {
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "frames": np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        "mu": torch.randn(3, 5),
        "flag": True,
        "count": np.int64(7),
    }
    check, decoded = records.decode(json.loads(json.dumps(records.encode("hw2.x", values))))
    assert check == "hw2.x"
    assert decoded["scalar"].shape == () and decoded["scalar"] == 2.5
    np.testing.assert_array_equal(decoded["frames"], values["frames"])
    np.testing.assert_array_equal(decoded["mu"], values["mu"].numpy())
    assert decoded["flag"].dtype == bool and decoded["flag"]
    assert decoded["count"] == 7


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["values"]["a"].update(dtype="object"), "dtype"),
        (lambda r: r["values"]["a"].update(shape=[5]), "bytes do not make"),
        (lambda r: r["values"]["a"].update(shape="3"), "not a list of sizes"),
        (lambda r: r["values"]["a"].update(data="%%%"), "not base64"),
        (lambda r: r["values"]["a"].update(shape=[2001, 1000]), "more than"),
        (lambda r: r.update(values=[1, 2]), "'values' dict"),
        (lambda r: r.pop("check"), "'check' name"),
    ],
)
def test_malformed_records_are_refused(edit, message):
    """Is a record that is not what `encode` writes refused with a RecordError saying why?"""
    record = records.encode("hw2.x", {"a": np.zeros(3, np.float32)})
    edit(record)
    with pytest.raises(records.RecordError, match=message):
        records.decode(record)


def test_every_judged_check_records_and_is_called_by_a_test_cell():
    """Does each judged check have a judge, and is each called by a hidden test of the source?"""
    from autograder.judges import hw2 as hw2_judges
    from autograder.pipeline import source_dir

    judged = {f"hw2.{name}" for name in judges.JUDGED["hw2"]}
    assert all(callable(getattr(hw2_judges, name)) for name in judges.JUDGED["hw2"])
    called = set()
    for path in sorted(source_dir("hw2_world_models").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.metadata.get("nbgrader", {}).get("grade"):
                called.update(judges.checks_called(cell.source))
    assert called == judged
    recording = {
        name
        for name, fn in inspect.getmembers(checks, inspect.isfunction)
        if fn.__module__ == checks.__name__ and "record(" in inspect.getsource(fn)
    }
    assert {f"hw2.{name}" for name in recording} == judged


@pytest.mark.parametrize("check", ["w1_encode_decode", "w1_sampling"])
def test_records_of_the_reference_model_pass(conv_vae, check):
    """Does a correct ConvVAE's record pass its judge?"""
    record = _record_of(check, conv_vae)
    assert judges.judge_outputs(SOURCE.format(check, "ConvVAE"), _outputs(record)) is None


@pytest.mark.parametrize("check", ["w2_recon", "w2_kl_floor", "w2_gradients"])
def test_records_of_the_reference_loss_pass(vae_loss, check):
    """Does a correct vae_loss's record pass its judge?"""
    record = _record_of(check, vae_loss)
    assert judges.judge_outputs(SOURCE.format(check, "vae_loss"), _outputs(record)) is None


def test_a_bug_is_found_by_the_judge_not_the_kernel():
    """Does the floor-after-the-batch-mean bug pass the kernel's checks and fail the judge, with a hint?"""
    namespace = {"__name__": "__main__", "torch": torch}
    exec(FLOOR_AFTER_MEAN_BUG, namespace)
    record = _record_of("w2_kl_floor", namespace["vae_loss"])
    failure = judges.judge_outputs(SOURCE.format("w2_kl_floor", "vae_loss"), _outputs(record))
    assert failure is not None and "floor each sample's KL" in failure


def test_a_model_with_logvar_registered_first_matches_the_reference():
    """Are the two Linear(1024, z) layers matched to mu and logvar whichever is registered first?"""
    source = inspect.getsource(reference_conv_vae)
    mu_line = "        self.fc_mu = nn.Linear(1024, z_size)\n"
    assert mu_line in source
    swapped = source.replace(mu_line, "").replace(
        "        self.fc_logvar = nn.Linear(1024, z_size)\n",
        "        self.fc_logvar = nn.Linear(1024, z_size)\n" + mu_line,
    )
    namespace = {"__name__": "__main__"}
    exec(swapped, namespace)
    model = namespace["ConvVAE"]()
    assert [type(m).__name__ for m in model.children()][1:3] == ["Linear", "Linear"]
    assert next(iter(dict(model.named_children()))) == "encoder"
    assert list(dict(model.named_children()))[1] == "fc_logvar"
    record = _record_of("w1_encode_decode", namespace["ConvVAE"])
    assert judges.judge_outputs(SOURCE.format("w1_encode_decode", "ConvVAE"), _outputs(record)) is None


#: A vae_loss with a bug only the hidden check finds (a floor of kl_tolerance * 32 whatever z_size),
#: which hands over to the reference if a caller's globals hold it (as the hidden check's did when
#: it compared in the kernel). Its ConvVAE counterpart is graded in tests/test_grading_hw2.py.
PEEKING_LOSS = """
import sys

def vae_loss(x, x_hat, mu, logvar, kl_tolerance=0.5):
    frame = sys._getframe(1)
    while frame is not None:
        found = frame.f_globals.get("reference")
        if found is not None and hasattr(found, "vae_loss"):
            return found.vae_loss(x, x_hat, mu, logvar, kl_tolerance)
        frame = frame.f_back
    recon = (x - x_hat).pow(2).sum(dim=(1, 2, 3)).mean()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
    kl = torch.clamp(kl, min=kl_tolerance * 32).mean()
    return {"loss": recon + kl, "recon": recon, "kl": kl}
"""


def test_a_loss_that_looks_for_the_reference_in_the_callers_finds_none():
    """Does a vae_loss that walks up its callers' frames for the reference earn only what its own code earns?"""
    namespace = {"__name__": "__main__", "torch": torch}
    exec(PEEKING_LOSS, namespace)
    # (this module names the reference module `reference_hw2`, so its frames do not hand it over)
    recon, kl = (_record_of(check, namespace["vae_loss"]) for check in ("w2_recon", "w2_kl_floor"))
    assert judges.judge_outputs(SOURCE.format("w2_recon", "vae_loss"), _outputs(recon)) is None
    failure = judges.judge_outputs(SOURCE.format("w2_kl_floor", "vae_loss"), _outputs(kl))
    assert failure is not None and "kl_tolerance=1.0): kl is 32.0000" in failure


def test_forged_missing_and_repeated_records_earn_nothing(conv_vae):
    """Is a record whose values were changed, a missing record or a repeated one a failure of the cell?"""
    source = SOURCE.format("w1_encode_decode", "ConvVAE")
    record = _record_of("w1_encode_decode", conv_vae)
    forged = json.loads(json.dumps(record))
    entry = forged["values"]["mu_32"]
    mu = np.frombuffer(base64.b64decode(entry["data"]), dtype=np.float32) + 0.01
    entry["data"] = base64.b64encode(mu.tobytes()).decode()
    assert "mu differs from the reference" in judges.judge_outputs(source, _outputs(forged))
    assert "left 0 records" in judges.judge_outputs(source, [])
    assert "left 2 records" in judges.judge_outputs(source, _outputs(record, record))
    other = records.encode("hw2.w1_encode_decode", {"mu_32": np.zeros((5, 32), np.float32)})
    assert "lacks the value" in judges.judge_outputs(source, _outputs(other))
    assert "malformed" in judges.judge_outputs(source, _outputs({"check": 1}))
    # a cell that calls no judged check is not judged, whatever it prints
    assert judges.judge_outputs("checks = None", _outputs(forged)) is None


def test_judge_cell_turns_a_failure_into_an_error_output_and_drops_records(conv_vae):
    """Does the grader's preprocessor give a failing cell a CheckFailed error, and keep no record?"""
    record = _record_of("w1_sampling", conv_vae)
    record["values"]["z"] = records.encode("x", {"z": np.zeros((128, 32), np.float32)})["values"]["z"]
    cell = new_code_cell(SOURCE.format("w1_sampling", "ConvVAE"), metadata={"nbgrader": {"grade": True}})
    cell.outputs = [nbformat.from_dict(o) for o in _outputs(record)]
    judge_cell(cell)
    assert [o.output_type for o in cell.outputs] == ["error"]
    assert cell.outputs[0].ename == "CheckFailed" and "exp(logvar / 2) * eps" in cell.outputs[0].evalue
    # an ungraded cell keeps its outputs but loses records, unjudged
    plain = new_code_cell("print(1)")
    plain.outputs = [nbformat.from_dict(o) for o in _outputs(record)]
    judge_cell(plain)
    assert plain.outputs == []


def test_outside_autograding_the_check_judges_in_the_kernel(vae_loss):
    """Does an instructor running the source notebook get the judge's verdict in the cell itself?"""
    namespace = {"__name__": "__main__", "torch": torch}
    exec(FLOOR_AFTER_MEAN_BUG, namespace)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("NBGRADER_EXECUTION", raising=False)
        checks.w2_recon(vae_loss)
        with pytest.raises(CheckFailed, match="floor each sample"):
            checks.w2_kl_floor(namespace["vae_loss"])


def test_the_checks_need_no_reference():
    """Do the hidden checks and their constants agree with the reference, which they never import?"""
    for module in (checks, hw1_checks):
        assert "course_lib.solutions" not in inspect.getsource(module)
    for z_size in (8, 16, 32, 64):
        model = reference_conv_vae.ConvVAE(z_size=z_size)
        assert sum(p.numel() for p in model.parameters()) == checks.N_PARAMS + (z_size - 32) * checks.PARAMS_PER_LATENT
        assert sorted(map(checks.describe, map(checks.signature, checks.parameterised_layers(model)))) == sorted(
            map(checks.describe, checks.expected_signatures(z_size))
        )
    assert list(hw1_reference.DEFAULT_HIDDEN_DIMS) == hw1_checks.DEFAULT_HIDDEN_DIMS
    for args in [(3, 10), (3, 6, [8, 16, 32, 64, 128]), (1, 4, [4, 8, 16, 32, 64])]:
        model = hw1_reference.MyVAE(*args)
        layers = (model.encoder, model.z_simple, model.z_mu, model.z_var)
        dims = list(args[2]) if len(args) > 2 else hw1_checks.DEFAULT_HIDDEN_DIMS
        assert hw1_checks.encoder_parameter_count(args[0], args[1], dims) == sum(
            p.numel() for m in layers for p in m.parameters()
        )


def test_the_library_loss_is_refused_however_it_is_reached():
    """Does a vae_loss that reaches course_lib's loss by a built name fail, and the library work after?"""
    from course_lib import losses

    namespace = {"__name__": "__main__", "losses": losses}
    exec(
        "def vae_loss(x, x_hat, mu, logvar, kl_tolerance=0.5):\n"
        "    out = getattr(losses, 'vae' + '_loss')(x, x_hat, mu, logvar, kl_tolerance=kl_tolerance)\n"
        "    return {k: out[k] for k in ('loss', 'recon', 'kl')}",
        namespace,
    )
    with pytest.raises(CheckFailed, match="must not call course_lib's loss"):
        checks.w2_recon(namespace["vae_loss"])
    x = torch.rand(2, 3, 64, 64)
    assert float(losses.vae_loss(x, x, torch.zeros(2, 4), torch.zeros(2, 4))["recon"]) == 0.0
