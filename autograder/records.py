"""Probe records: what a hidden check measured in the student's kernel, for the judge outside it.

The kernel runs the student's code, and code that runs beside it can be changed by it. So nothing
in the kernel decides a grade: a check's *probe* runs the student's code on inputs drawn from the
grading run's seed and emits the raw outputs as one record, a ``display_data`` output of MIME type
:data:`MIME` in the test cell. The grader's process reads the record back from the cell's outputs
(:mod:`autograder.judging`) and the check's *judge* decides there.

A record carries the ``grade_id`` of its test cell and the nonce the grader wrote into that cell, so
it cannot be made before the cell runs or be replayed from another cell. It is untrusted data:
:func:`decode` accepts only JSON with arrays of a few numeric dtypes (shapes checked against the
byte count, the size bounded) and short texts; nothing is unpickled or evaluated.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

#: MIME type of a probe record in a cell's outputs.
MIME = "application/vnd.course.probe+json"
#: dtypes a record's arrays may have.
DTYPES = ("float32", "float64", "int64", "int8", "bool", "uint8")
#: Largest number of array elements in one record (all arrays together): 8 M, about 40 MB of JSON.
MAX_ELEMENTS = 8_000_000
#: Longest text value (characters).
MAX_TEXT = 100_000

Value = np.ndarray | str


class RecordError(ValueError):
    """A record is malformed: not the structure :func:`encode` writes."""


def encode(grade_id: str, nonce: str | None, values: dict[str, Any], notes: list[str] | None = None) -> dict[str, Any]:
    """The JSON-safe record of ``values`` measured by the check of ``grade_id``.

    Args:
        grade_id: the test cell's nbgrader ``grade_id`` (which is the check's name).
        nonce: the nonce the grader wrote into the test cell (``None`` outside grading).
        values: name -> a ``torch.Tensor`` (detached and copied to the CPU), a numpy array, a
            Python number or bool (each becomes an array of one of :data:`DTYPES`), or a ``str``.
        notes: what the kernel noticed about itself (hooks defined by the notebook); for review.

    Raises:
        RecordError: if a value has a dtype outside :data:`DTYPES` or is too large.
    """
    encoded: dict[str, Any] = {}
    total = 0
    for name, value in values.items():
        if isinstance(value, str):
            if len(value) > MAX_TEXT:
                raise RecordError(f"{name!r} is a text of {len(value)} characters, more than {MAX_TEXT}")
            encoded[name] = {"text": value}
            continue
        if hasattr(value, "detach"):  # a torch tensor, without importing torch here
            value = value.detach().cpu().numpy()
        array = np.asarray(value)  # tobytes() writes C order whatever the layout
        if array.dtype.name not in DTYPES:
            raise RecordError(f"{name!r} has dtype {array.dtype}, expected one of {DTYPES}")
        total += array.size
        if total > MAX_ELEMENTS:
            raise RecordError(f"the values hold more than {MAX_ELEMENTS:,} elements")
        encoded[name] = {
            "dtype": array.dtype.name,
            "shape": list(array.shape),
            "data": base64.b64encode(array.tobytes()).decode("ascii"),
        }
    return {"grade_id": grade_id, "nonce": nonce, "values": encoded, "notes": list(notes or [])}


def decode(record: object) -> tuple[str, str | None, dict[str, Value], list[str]]:
    """``(grade_id, nonce, {name: array or text}, notes)`` of a record written by :func:`encode`.

    Raises:
        RecordError: if ``record`` is not such a record: wrong structure, an unknown dtype, a
            shape that does not match the data, or more than :data:`MAX_ELEMENTS` elements.
    """
    if not isinstance(record, dict) or not isinstance(record.get("grade_id"), str):
        raise RecordError("a probe record must be a dict with a 'grade_id'")
    nonce = record.get("nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise RecordError("a probe record's nonce must be a string")
    notes = record.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) and len(n) <= 1000 for n in notes):
        raise RecordError("a probe record's notes must be a list of short texts")
    values = record.get("values")
    if not isinstance(values, dict):
        raise RecordError("a probe record must hold a 'values' dict")
    out: dict[str, Value] = {}
    total = 0
    for name, entry in values.items():
        if isinstance(entry, dict) and set(entry) == {"text"}:
            if not isinstance(entry["text"], str) or len(entry["text"]) > MAX_TEXT:
                raise RecordError(f"value {name!r}: a text must be a string of at most {MAX_TEXT} characters")
            out[name] = entry["text"]
            continue
        if not isinstance(entry, dict) or entry.get("dtype") not in DTYPES:
            raise RecordError(f"value {name!r}: expected a text or a dict with a dtype among {DTYPES}")
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise RecordError(f"value {name!r}: shape {shape!r} is not a list of sizes")
        total += math.prod(shape)
        if total > MAX_ELEMENTS:
            raise RecordError(f"the record holds more than {MAX_ELEMENTS:,} elements")
        try:
            raw = base64.b64decode(entry.get("data", ""), validate=True)
        except (ValueError, TypeError) as err:
            raise RecordError(f"value {name!r}: the data is not base64 ({err})") from None
        dtype = np.dtype(entry["dtype"])
        if len(raw) != math.prod(shape) * dtype.itemsize:
            raise RecordError(f"value {name!r}: {len(raw)} bytes do not make a {entry['dtype']} array of shape {shape}")
        out[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    return record["grade_id"], nonce, out, notes


def _is_record(output: dict) -> bool:
    return output.get("output_type") in ("display_data", "execute_result") and MIME in output.get("data", {})


def records_in(outputs: list[dict]) -> list[object]:
    """The probe records among a cell's ``outputs`` (nbformat output dicts), in order."""
    return [output["data"][MIME] for output in outputs if _is_record(output)]


def without_records(outputs: list[dict]) -> list[dict]:
    """``outputs`` without the probe records (they are for the judge, not for the feedback)."""
    return [output for output in outputs if not _is_record(output)]
