"""Forged records earn nothing: for every hidden check, records of the right structure made without an
answer, and forgers on top of every mutant, judged as the grader judges them.

The forgers know what a student who has read ``autograder/checks`` knows: the records' names, dtypes
and shapes, the statistics and the descriptions of a correct answer's records, the nonce of the cell
and the inputs the public input functions draw from it. Each forged record is encoded and decoded
like a real one and judged with the inputs of its nonce; it must fail (a ``CheckFailed``, or a
record the judge finds inconsistent, which the grader reports). These run in-process; the same
forgers go through real nbgrader in ``tests/test_tamper.py``.
"""

from __future__ import annotations

import json
import secrets

import numpy as np
import pytest
import torch
from answers import hidden_calls, namespace, record_of, training_cell
from attacks import doctor, made_up, shapes

from autograder import checks, records
from autograder.checks import CheckFailed, Inconsistent, seed_of
from autograder.course import notebook_names
from autograder.records import RecordError
from autograder.submissions.hw1_vae import HW1_MUTANTS
from autograder.submissions.hw2_world_models import HW2_MUTANTS

ASSIGNMENTS = ("hw1_vae", "hw2_world_models")
CELLS = {
    grade_id: (assignment, notebook, names)
    for assignment in ASSIGNMENTS
    for notebook in notebook_names(assignment)
    for grade_id, names in hidden_calls(assignment, notebook).items()
}
MUTANTS = {**HW1_MUTANTS, **HW2_MUTANTS}


def verdict(grade_id: str, nonce: str, values: dict) -> str | None:
    """How the grader judges ``values`` as the record of ``grade_id`` carrying ``nonce``: ``None`` if it
    passes, else ``"failed: ..."`` or ``"inconsistent: ..."`` (reported) or ``"malformed: ..."``."""
    check = checks.find(grade_id)
    _, _, decoded, _ = records.decode(json.loads(json.dumps(records.encode(grade_id, nonce, values))))
    try:
        check.verdict(check.inputs(seed_of(nonce)), decoded)
    except CheckFailed as err:
        return f"failed: {err}"
    except Inconsistent as err:
        return f"inconsistent: {err}"
    except RecordError as err:
        return f"malformed: {err}"
    return None


def decoded(record: dict) -> dict:
    return records.decode(record)[2]


@pytest.fixture(scope="module")
def answers() -> dict[str, dict]:
    """The source answers of every notebook, with activity 5's trained model, by notebook name."""
    out = {}
    for assignment in ASSIGNMENTS:
        for notebook in notebook_names(assignment):
            ns = namespace(assignment, notebook)
            if any("model" in names for names in hidden_calls(assignment, notebook).values()):
                ns["model"] = training_cell(ns)["model"]
            out[notebook] = ns
    return out


def honest(answers: dict, grade_id: str, nonce: str, ns: dict | None = None) -> dict:
    """The record the probe of ``grade_id`` leaves for the answers of ``ns`` (default: the source's)."""
    _, notebook, names = CELLS[grade_id]
    ns = ns if ns is not None else answers[notebook]
    return record_of(grade_id, *(ns[n] for n in names), nonce=nonce)


def test_every_check_is_forged_here():
    """Does this suite cover every declared check?"""
    assert set(CELLS) == set(checks.registry())


@pytest.mark.parametrize("grade_id", sorted(CELLS))
def test_the_source_answers_pass_this_judging(answers, grade_id):
    """Do the source answers pass when judged as the forgers are (so that a forger's failure is the forgery's)?"""
    nonce = secrets.token_hex(8)
    assert verdict(grade_id, nonce, decoded(honest(answers, grade_id, nonce))) is None


@pytest.mark.parametrize("grade_id", sorted(CELLS))
def test_a_correct_record_made_for_other_inputs_earns_nothing(answers, grade_id):
    """Does a correct answer's record made before grading, for other inputs, fail once it carries this
    run's nonce (the inputs are drawn per grading run)?"""
    stale = decoded(honest(answers, grade_id, "0123456789abcdef"))
    assert verdict(grade_id, secrets.token_hex(8), stale) is not None


@pytest.mark.parametrize("grade_id", sorted(CELLS))
def test_made_up_values_of_the_right_structure_earn_nothing(answers, grade_id):
    """Do records with a correct answer's names, dtypes, shapes, statistics and texts (descriptions,
    logs), but arrays drawn without an answer, fail?"""
    nonce = secrets.token_hex(8)
    structure = shapes(honest(answers, grade_id, nonce))
    for seed in range(3):
        values = made_up(structure, np.random.default_rng(seed))
        assert verdict(grade_id, nonce, values) is not None, seed


@pytest.mark.parametrize(
    "grade_id", ["a1_output_range", "a2_reparameterize_stats", "a2_gradients", "a2_encode_forward", "w1_sampling"]
)
def test_values_computed_from_the_public_inputs_earn_nothing(answers, grade_id):
    """Does a correct answer's record, doctored where a forger without the answer can compute plausible
    values from the public inputs (outputs clamped into [0, 1]; samples mu + sigma * noise of its own,
    with the gradients that go with them), fail?"""
    nonce = secrets.token_hex(8)
    forged = doctor(grade_id, nonce, decoded(honest(answers, grade_id, nonce)))
    message = verdict(grade_id, nonce, forged)
    if grade_id == "a1_output_range":  # clamping a correct output changes nothing, so make it constant
        forged = {k: (np.full_like(v, 0.5) if k.startswith("far_") else v) for k, v in forged.items()}
        message = verdict(grade_id, nonce, forged)
        assert message is not None and message.startswith("inconsistent"), message
    assert message is not None, grade_id
    if grade_id != "a1_output_range":
        assert "generator" in message, message


def _tiny_autoencoder() -> torch.nn.Module:
    """A model that is no MyVAE: an average colour per frame, decoded by a 1x1 convolution."""
    from torch import nn

    model = nn.Module()
    model.encoder = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Conv2d(3, 128, 1))  # (B, 128, 2, 2)
    model.z_simple, model.z_mu, model.z_var = (nn.Linear(512, 8) for _ in range(3))
    model.decoder_input = nn.Linear(8, 4)
    model.decoder = nn.Sequential(nn.Upsample(scale_factor=16))  # (B, 1, 32, 32)
    model.final_layer = nn.Sequential(nn.Conv2d(1, 3, 1), nn.Upsample(scale_factor=2), nn.Sigmoid())
    return model


def test_a_trained_model_that_is_not_the_notebooks_earns_nothing():
    """Does a1_loss_drops refuse weights that lower the loss by design (the mean colour in a bias) in
    layers the student's MyVAE never built?"""
    from autograder.checks import hw1_vae, layers
    from autograder.checks.hw1_vae.autoencoder import cartpole_frames

    nonce = secrets.token_hex(8)
    model = _tiny_autoencoder()
    frames = cartpole_frames(hw1_vae.a1_loss_drops.inputs(seed_of(nonce))["frames_seed"])
    mean = torch.tensor(frames.reshape(-1, 3).mean(0) / 255.0).clamp(0.01, 0.99)
    with torch.no_grad():
        model.final_layer[0].weight.zero_()
        model.final_layer[0].bias.copy_(torch.log(mean) - torch.log1p(-mean))
    values = {"trained": json.dumps(layers.describe(model)), **layers.state_values(model, "trained")}
    message = verdict("a1_loss_drops", nonce, values)
    assert message is not None and "build_decoder" in message, message


def test_frames_that_no_environment_rendered_earn_nothing(answers):
    """Do activity 5's frames made up with the colours of the chosen environment, with no environment
    behind them, fail?"""
    from autograder.checks.episodes import frame_digests

    nonce = secrets.token_hex(8)
    values = decoded(honest(answers, "a5_frames", nonce))
    fake = np.full((64, 64, 64, 3), 255, np.uint8)  # white frames with a rod of Pendulum's red
    for i, frame in enumerate(fake):
        frame[20:44, 30 + i % 8 : 34 + i % 8] = (204, 77, 77)
    for k in range(3):
        values[f"run{k}_digests"] = frame_digests(fake if k < 2 else fake[::-1])
        values[f"run{k}_envs"] = "[]"
    message = verdict("a5_frames", nonce, values)
    assert message is not None and "make_env" in message, message


def _mutant_namespace(name: str) -> dict:
    mutant = MUTANTS[name]
    assignment = "hw1_vae" if name in HW1_MUTANTS else "hw2_world_models"
    ns = namespace(assignment, mutant.notebook, {mutant.answer: mutant.code})
    if any("model" in names for names in hidden_calls(assignment, mutant.notebook).values()):
        ns["model"] = training_cell(ns)["model"]
    return ns


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_a_forger_on_top_of_each_mutant_gains_nothing(answers, name):
    """For each classic bug, do its own records, with their values made up (right structure and
    statistics) or doctored without an answer (outputs clamped into range, noise of its own with
    matching gradients), still fail every cell the bug fails?"""
    ns = _mutant_namespace(name)
    for grade_id in sorted(MUTANTS[name].fails):
        nonce = secrets.token_hex(8)
        try:
            record = honest(answers, grade_id, nonce, ns)
            forgeries = [made_up(shapes(record), np.random.default_rng(0)), doctor(grade_id, nonce, decoded(record))]
        except CheckFailed:  # the bug fails in the kernel already: a forger has only the records' structure
            forgeries = [made_up(shapes(honest(answers, grade_id, nonce)), np.random.default_rng(0))]
        for forged in forgeries:
            assert verdict(grade_id, nonce, forged) is not None, grade_id
