"""Probe records: what a hidden check measured in the student's kernel, for the judge outside it.

A check that compares the student's answer with the reference cannot do so in the kernel: the
kernel runs the student's code, which could read the reference from the check's frames or
globals. So the check only *probes*: it runs the student's code on inputs drawn from the checks'
seeds and emits the outputs as one record, a ``display_data`` output of MIME type :data:`MIME`.
The grader process (:class:`autograder.nbgrader_ext.RestartingExecute`) reads the record from
the cell's outputs and :mod:`autograder.judges` compares it with the reference there.

A record is untrusted data from the student's kernel. :func:`decode` accepts only JSON with
arrays of a few numeric dtypes, checks every shape against the byte count and bounds the size;
nothing is unpickled or evaluated.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

#: MIME type of a probe record in a cell's outputs.
MIME = "application/vnd.course.probe+json"
#: dtypes a record may hold.
DTYPES = ("float32", "float64", "int64", "bool", "uint8")
#: Largest number of array elements in one record (all arrays together).
MAX_ELEMENTS = 2_000_000


class RecordError(ValueError):
    """A record is malformed: not the structure :func:`encode` writes."""


def encode(check: str, values: dict[str, Any]) -> dict[str, Any]:
    """The JSON-safe record of ``values`` (tensors, arrays, numbers, bools) measured by ``check``.

    Args:
        check: ``"<assignment module>.<check>"``, e.g. ``"hw2.w1_encode_decode"``.
        values: name -> a ``torch.Tensor`` (detached and copied to the CPU), a numpy array, or a
            Python number or bool; each becomes an array of one of :data:`DTYPES`.

    Raises:
        RecordError: if a value has a dtype outside :data:`DTYPES`.
    """
    arrays = {}
    for name, value in values.items():
        if hasattr(value, "detach"):  # a torch tensor, without importing torch here
            value = value.detach().cpu().numpy()
        array = np.asarray(value)
        if array.dtype.name not in DTYPES:
            raise RecordError(f"{name!r} has dtype {array.dtype}, expected one of {DTYPES}")
        arrays[name] = {
            "dtype": array.dtype.name,
            "shape": list(array.shape),
            "data": base64.b64encode(array.tobytes()).decode("ascii"),
        }
    return {"check": check, "values": arrays}


def decode(record: object) -> tuple[str, dict[str, np.ndarray]]:
    """``(check, {name: array})`` of a record written by :func:`encode`.

    Raises:
        RecordError: if ``record`` is not such a record: wrong structure, an unknown dtype, a
            shape that does not match the data, or more than :data:`MAX_ELEMENTS` elements.
    """
    if not isinstance(record, dict) or not isinstance(record.get("check"), str):
        raise RecordError("a probe record must be a dict with a 'check' name")
    values = record.get("values")
    if not isinstance(values, dict):
        raise RecordError("a probe record must hold a 'values' dict")
    out, total = {}, 0
    for name, entry in values.items():
        if not isinstance(entry, dict) or entry.get("dtype") not in DTYPES:
            raise RecordError(f"value {name!r}: expected a dict with a dtype among {DTYPES}")
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise RecordError(f"value {name!r}: shape {shape!r} is not a list of sizes")
        size = math.prod(shape)
        total += size
        if total > MAX_ELEMENTS:
            raise RecordError(f"the record holds more than {MAX_ELEMENTS} elements")
        try:
            raw = base64.b64decode(entry.get("data", ""), validate=True)
        except (ValueError, TypeError) as err:
            raise RecordError(f"value {name!r}: the data is not base64 ({err})") from None
        dtype = np.dtype(entry["dtype"])
        if len(raw) != size * dtype.itemsize:
            raise RecordError(f"value {name!r}: {len(raw)} bytes do not make a {entry['dtype']} array of shape {shape}")
        out[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    return record["check"], out


def _is_record(output: dict) -> bool:
    return output.get("output_type") in ("display_data", "execute_result") and MIME in output.get("data", {})


def records_in(outputs: list[dict]) -> list[object]:
    """The probe records among a cell's ``outputs`` (nbformat output dicts), in order."""
    return [output["data"][MIME] for output in outputs if _is_record(output)]


def without_records(outputs: list[dict]) -> list[dict]:
    """``outputs`` without the probe records (they are for the judge, not for the feedback)."""
    return [output for output in outputs if not _is_record(output)]
