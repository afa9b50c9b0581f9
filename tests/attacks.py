"""Attacks on the grader that several test modules submit: payloads that get past the static scan as
"for review" only, and forgers of the hidden checks' records.

A payload hides code in pickled bytes (:func:`smuggled`): the scan then reports the unpickling for
review without zeroing the notebook, so what is under test is the defense behind the scan (the
sandbox, and the judges outside the kernel). The forgers run in the student's kernel and know what a
student who has read ``autograder/checks`` knows: the records' structure, the nonce in each test
cell, and the inputs the public input functions draw from it.
"""

from __future__ import annotations

import base64
import json
import pickle
from typing import Any

import numpy as np

from autograder import records


class Payload:
    """Pickles to a call of ``exec(code)``: what unpickling the attack's bytes runs (in the globals of
    the cell that unpickles it)."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def smuggled(code: str) -> str:
    """Answer-cell lines that run ``code`` from base64-encoded pickle bytes."""
    blob = base64.b64encode(pickle.dumps(Payload(code))).decode()
    return f"\nimport base64 as _b, pickle as _p\n_p.loads(_b.b64decode('{blob}'))\n"


def structures(assignment: str) -> dict[str, dict[str, list]]:
    """``{grade_id: shapes(record)}`` of a correct record of every check of ``assignment`` (the source
    answers, activity 5's model trained as its notebook trains it): what the made-up forger imitates."""
    from answers import hidden_calls, namespace, record_of, training_cell

    from autograder.course import notebook_names

    out = {}
    for notebook in notebook_names(assignment):
        ns = namespace(assignment, notebook)
        for grade_id, names in hidden_calls(assignment, notebook).items():
            if "model" in names and "model" not in ns:
                ns["model"] = training_cell(ns)["model"]
            out[grade_id] = shapes(record_of(grade_id, *(ns[n] for n in names), nonce="fedcba9876543210"))
    return out


def shapes(record: dict) -> dict[str, list]:
    """The structure of a record (from :func:`autograder.records.encode`) for :data:`MADE_UP`: texts
    kept as they are (descriptions, logs as JSON), arrays as ``[dtype, shape, mean, std]``."""
    _, _, values, _ = records.decode(record)
    out: dict[str, list] = {}
    for name, value in values.items():
        if isinstance(value, str):
            out[name] = ["text", value]
        else:
            a = value.astype(np.float64)
            mean = float(a.mean()) if a.size else 0.0
            # a forger knows a value's scale, not the value: never less spread than 5% of it
            stats = [mean, max(float(a.std()) if a.size else 1.0, 0.05 * abs(mean), 1e-3)]
            out[name] = ["array", [value.dtype.name, list(value.shape), *stats]]
    return out


#: The forger's own function: values of the right names, dtypes and shapes with the statistics of a
#: structure (see :func:`shapes`), drawn without any answer. Source, so that it runs in a kernel too.
MADE_UP_VALUES = """
def made_up(structure, rng):
    values = {}
    for name, (kind, spec) in structure.items():
        if kind == "text":
            values[name] = spec
            continue
        dtype, shape, mean, std = spec
        draw = rng.normal(mean, std, size=shape)
        if dtype == "bool":
            values[name] = draw > mean
        elif dtype in ("uint8", "int8", "int64"):
            info = np.iinfo(dtype)
            values[name] = np.clip(np.rint(draw), info.min, info.max).astype(dtype)
        else:
            values[name] = draw.astype(dtype)
    return values
"""
_namespace: dict[str, Any] = {"np": np}
exec(MADE_UP_VALUES, _namespace)
#: :data:`MADE_UP_VALUES`, in this process: ``made_up(structure, rng) -> values``.
made_up = _namespace["made_up"]

#: Replaces every hidden check's probe with one that emits a record of the right structure (names,
#: dtypes, shapes, the statistics of a correct answer's values, the texts of a correct answer's
#: descriptions and logs) made without running any answer, carrying the cell's nonce.
MADE_UP = """
import json
import numpy as np
import autograder.checks as c
from IPython.display import display
STRUCTURES = json.loads({structures!r})
{made_up_values}
def forged(self, *objects, nonce=None):
    values = made_up(STRUCTURES[self.grade_id], np.random.default_rng())
    display({{c.records.MIME: c.records.encode(self.grade_id, nonce, values)}}, raw=True)

c.Check.__call__ = forged
"""


def made_up_payload(structures: dict[str, dict]) -> str:
    """:data:`MADE_UP` for ``structures`` (``{grade_id: shapes(record)}``)."""
    return MADE_UP.format(structures=json.dumps(structures), made_up_values=MADE_UP_VALUES)


#: The doctor's own function: ``doctor(grade_id, nonce, values)`` returns the values of a probe's
#: record with the parts that a buggy answer gets wrong made up, without an answer: outputs clamped
#: into range, noise of its own (right mean and spread) with the gradients that go with it.
DOCTOR_VALUES = """
def _noise(shape):
    return torch.from_numpy(np.random.default_rng().standard_normal(tuple(shape)).astype("float32"))

def _samples(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * _noise(mu.shape)

def _gradients(mu, logvar, prefix=""):
    z = _samples(mu, logvar)
    return {prefix + "z": z, prefix + "has_grad_mu": True, prefix + "has_grad_logvar": True,
            prefix + "grad_mu": torch.ones_like(mu), prefix + "grad_logvar": 0.5 * (z - mu)}

def doctor(grade_id, nonce, values):
    values = dict(values)
    inputs = c.find(grade_id).inputs(c.seed_of(nonce))
    if grade_id == "a1_output_range":
        values = {k: (torch.as_tensor(v).clamp(0, 1) if k.startswith("far_") else v) for k, v in values.items()}
    elif grade_id in ("a2_reparameterize_stats", "w1_sampling"):
        mu, logvar = sampling.mu_logvar(inputs)
        values.update({k: _samples(mu, logvar) for k in ("z1", "z2")})
        if grade_id == "w1_sampling":
            values.update(_gradients(*sampling.gradient_leaves(inputs["gradient_seed"]), prefix="gradient_"))
            mu_f, logvar_f = torch.as_tensor(values["mu"]), torch.as_tensor(values["logvar"])
            values.update({k: _samples(mu_f, logvar_f) for k in ("z", "z_again")})
    elif grade_id == "a2_gradients":
        values = _gradients(*sampling.gradient_leaves(inputs["seed"]))
    elif grade_id == "a2_encode_forward":
        mu_f, logvar_f = torch.as_tensor(values["mu_f"]), torch.as_tensor(values["logvar_f"])
        values.update({k: _samples(mu_f, logvar_f) for k in ("z1", "z2")})
    return values
"""
_DOCTOR_IMPORTS = """import numpy as np
import torch
import autograder.checks as c
from autograder.checks import sampling
"""
_namespace_doctor: dict[str, Any] = {}
exec(_DOCTOR_IMPORTS + DOCTOR_VALUES, _namespace_doctor)
#: :data:`DOCTOR_VALUES`, in this process.
doctor = _namespace_doctor["doctor"]

#: Lets every probe run, then doctors its record (:data:`DOCTOR_VALUES`) and drops the kernel's notes.
DOCTOR = (
    _DOCTOR_IMPORTS
    + DOCTOR_VALUES
    + """
_encode = c.records.encode

def encode(grade_id, nonce, values, notes=None):
    return _encode(grade_id, nonce, doctor(grade_id, nonce, values), [])

c.records.encode = encode
"""
)
