"""Hidden checks: one per graded test cell, declared once with its probe and its judge side by side.

A check is keyed by the ``grade_id`` of its test cell and has three parts::

    @check("a2_gradients", inputs=gradient_inputs)      # inputs: seed -> parameters, both sides
    def a2_gradients(inputs, model_cls):                 # probe: runs in the student's kernel
        ...                                              #   runs the student's code, returns raw outputs
        return {"z": z, "grad_mu": mu.grad, ...}

    @a2_gradients.judge                                  # judge: runs in the grader's process
    def _(inputs, record):                               #   decides from the outputs alone
        expect(np.allclose(record.array("grad_mu"), 1), "dz/dmu should be 1 ...")

While nbgrader autogrades, the grader writes a fresh nonce into the hidden call; the inputs come
from a seed derived from it, the probe's outputs leave the kernel as a record
(:mod:`autograder.records`) carrying the nonce back, and the judge decides in the grader's process.
A pass rests only on values the judge recomputes or cross-checks itself; a record whose outputs
disagree with the judge's computation is :class:`Inconsistent`. Outside autograding the judge runs
in the kernel with a fixed seed. Judges import the reference answers (``course_lib.solutions``)
inside their bodies, which the sandbox hides from the kernel. How and why: ``docs/grading.md``.

- :mod:`autograder.checks.hw1_vae`: homework 1's checks, one module per activity
- :mod:`autograder.checks.hw2_world_models`: homework 2's checks, one module per activity
- :mod:`autograder.checks.episodes`: collectors judged by replaying their environments' logs
- :mod:`autograder.checks.layers`: the student's layers, described in the kernel, rebuilt by the judge
- :mod:`autograder.checks.sampling`: ``reparameterize`` judged by its noise, statistics and gradients
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import pkgutil
import sys
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from autograder import records
from autograder.records import RecordError


class CheckFailed(AssertionError):  # noqa: N818 - reads as what happened, in feedback
    """A hidden check found a wrong answer; the message is shown in the feedback.

    Attributes:
        site: which test decided, as ``module:line`` of the :func:`expect` (or ``raise``) that
            failed: the kind of failure, known without reading the message (which carries numbers
            that change from run to run). The class report groups failures by it and the feedback
            hints (:mod:`autograder.hints`) match on it.
    """

    def __init__(self, message: str, site: str | None = None) -> None:
        super().__init__(message)
        self.site = site or _site(sys._getframe(1))


def _site(frame: Any) -> str:
    return f"{frame.f_globals.get('__name__', '?')}:{frame.f_lineno}"


def expect(condition: object, message: str) -> None:
    """Raise :class:`CheckFailed` with ``message`` unless ``condition`` is true (its ``site`` is the
    caller's line)."""
    if not condition:
        raise CheckFailed(message, site=_site(sys._getframe(1)))


class Inconsistent(RecordError):  # noqa: N818 - reads as what the record is, in reports
    """A record's values are not what the layers, weights or logs it carries compute in the judge's
    hands: made elsewhere than by the probe (a forgery), since an honest probe records both."""


def expect_consistent(condition: object, message: str) -> None:
    """Raise :class:`Inconsistent` with ``message`` unless ``condition`` is true."""
    if not condition:
        raise Inconsistent(message)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with PyTorch's and NumPy's global generators seeded, then restore them."""
    import torch  # here, so that importing this module does not load torch

    torch_state = torch.random.get_rng_state()
    numpy_state = np.random.get_state()
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        torch.random.set_rng_state(torch_state)
        np.random.set_state(numpy_state)


@contextmanager
def layer_inputs(layer: Any) -> Iterator[list[Any]]:
    """The first input of every call of ``layer`` (a ``torch.nn.Module``) inside the block, detached,
    in call order: what a model feeds one of its layers (the z its decoder gets, say)."""
    captured: list[Any] = []
    handle = layer.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
    try:
        yield captured
    finally:
        handle.remove()


_FORBIDDEN_MODULES = ("course_lib.solutions", "autograder")


def _origin(obj: object) -> str:
    module = getattr(obj, "__module__", None) or ""
    if isinstance(obj, type(sys)):
        module = obj.__name__
    return module


def require_student_code(obj: object, name: str) -> None:
    """Fail unless ``obj`` (a function or class) was defined in the student's notebook.

    Refuses objects imported from elsewhere, subclasses of the reference, and functions or
    methods that call into ``course_lib.solutions`` or ``autograder`` (a wrapper of the reference).
    It runs in the kernel, so it only makes honest mistakes fail early with a clear message; the
    verdict is the judge's.

    Raises:
        CheckFailed: naming what ``obj`` was built from.
    """
    expect(_origin(obj) == "__main__", f"{name} must be defined in this notebook; it comes from {_origin(obj)!r}")
    if isinstance(obj, type):
        for base in obj.__mro__:
            expect(
                not _origin(base).startswith(_FORBIDDEN_MODULES),
                f"{name} must not build on the reference or the grader ({base.__module__}.{base.__qualname__})",
            )
        functions = [v for v in vars(obj).values() if inspect.isfunction(v)]
    else:
        functions = [obj] if inspect.isfunction(obj) else []
    for fn in functions:
        referenced = [fn.__globals__.get(n) for n in fn.__code__.co_names]
        referenced += [c.cell_contents for c in (fn.__closure__ or ()) if c.cell_contents is not None]
        for ref in referenced:
            expect(
                ref is None or not _origin(ref).startswith(_FORBIDDEN_MODULES),
                f"{name} uses {_origin(ref)} (the reference answers or the grader), which is not allowed",
            )


@contextmanager
def student_code(what: str) -> Iterator[None]:
    """Turn an exception raised by the student's code into a :class:`CheckFailed` naming ``what``."""
    try:
        yield
    except CheckFailed:
        raise
    except Exception as err:
        raise CheckFailed(f"{what} raised {type(err).__name__}: {err}") from None


# ---------------------------------------------------------------- seeds
def seed_of(nonce: str) -> int:
    """The seed of a grading run's inputs for the test cell that carries ``nonce`` (32 bits of it).

    Raises:
        ValueError: if ``nonce`` is not a hexadecimal string of at least 8 digits.
    """
    if len(nonce) < 8:
        raise ValueError(f"a nonce has at least 8 hexadecimal digits, got {nonce!r}")
    return int(nonce[:8], 16)


def default_seed(grade_id: str) -> int:
    """The fixed seed used outside autograding (source notebooks, validate, tests): stable per check."""
    return zlib.crc32(grade_id.encode())


def autograding() -> bool:
    """Whether nbgrader is autograding this kernel (it sets ``NBGRADER_EXECUTION=autograde``)."""
    return os.environ.get("NBGRADER_EXECUTION") == "autograde"


# ---------------------------------------------------------------- what the judge reads
class Record:
    """The values of one probe record, as the judge reads them.

    Every accessor raises :class:`~autograder.records.RecordError` when the value is missing or
    of another kind than the probe writes: an honest probe never leaves a record like that, so the
    grader reports the submission for review (:mod:`autograder.judging`). Shapes are the student's
    outputs and are checked by the judges themselves, with messages.
    """

    def __init__(self, values: dict[str, records.Value]):
        self.values = values

    def _get(self, name: str) -> records.Value:
        if name not in self.values:
            raise RecordError(f"the record has no value {name!r}")
        return self.values[name]

    def array(self, name: str, dtype: str | None = None) -> np.ndarray:
        """The array ``name``, of ``dtype`` if given."""
        value = self._get(name)
        if not isinstance(value, np.ndarray) or (dtype is not None and value.dtype.name != dtype):
            kind = value.dtype.name if isinstance(value, np.ndarray) else "text"
            raise RecordError(f"the record's {name!r} is {kind}, expected an array" + (f" of {dtype}" if dtype else ""))
        return value

    def tensor(self, name: str) -> Any:
        """The array ``name`` as a ``torch.Tensor`` (float arrays keep their dtype)."""
        import torch

        return torch.from_numpy(self.array(name))

    def number(self, name: str) -> float:
        """The scalar ``name`` as a float."""
        value = self.array(name)
        if value.shape != ():
            raise RecordError(f"the record's {name!r} has shape {value.shape}, expected a scalar")
        return float(value)

    def flag(self, name: str) -> bool:
        """The boolean scalar ``name``."""
        return bool(self.number(name))

    def text(self, name: str) -> str:
        """The text ``name``."""
        value = self._get(name)
        if not isinstance(value, str):
            raise RecordError(f"the record's {name!r} is an array, expected a text")
        return value

    def json(self, name: str) -> Any:
        """The text ``name`` parsed as JSON (a description the probe wrote)."""
        try:
            return json.loads(self.text(name))
        except json.JSONDecodeError as err:
            raise RecordError(f"the record's {name!r} is not JSON ({err})") from None


# ---------------------------------------------------------------- the registry
Inputs = dict[str, Any]
Probe = Callable[..., dict[str, Any]]
Judge = Callable[[Inputs, Record], None]


@dataclass
class Check:
    """A hidden check: the ``inputs`` drawn from a seed, the ``probe`` run in the student's kernel on
    them, and the ``judge`` that decides in the grader's process from the probe's outputs.

    Call it from the hidden test cell with the student's objects: ``checks.a1_structure(MyVAE)``.
    """

    grade_id: str
    inputs: Callable[[int], Inputs]
    probe: Probe
    decide: Judge | None = field(default=None, repr=False)

    def judge(self, fn: Judge) -> Judge:
        """Decorator: declare ``fn(inputs, record)`` as this check's judge."""
        self.decide = fn
        return fn

    def __call__(self, *objects: Any, nonce: str | None = None) -> None:
        """Run the probe on the student's ``objects``; emit the record, or judge in place.

        Args:
            objects: what the hidden test cell passes (the student's class or function...).
            nonce: written into the call by the grader while it autogrades.

        Raises:
            CheckFailed: when the student's code fails the probe, or, outside autograding, when the
                judge finds a wrong answer.
        """
        seed = seed_of(nonce) if nonce is not None else default_seed(self.grade_id)
        inputs = self.inputs(seed)
        values = self.probe(inputs, *objects)
        payload = records.encode(self.grade_id, nonce, values, kernel_notes())
        if nonce is None and not autograding():
            try:  # judge what the grader would read: the record, decoded
                self.verdict(inputs, records.decode(payload)[2])
                return
            except ImportError:  # no reference here: leave the record for a grader
                pass
        from IPython.display import display

        display({records.MIME: payload}, raw=True)

    def verdict(self, inputs: Inputs, values: dict[str, records.Value]) -> None:
        """Judge the ``values`` of a decoded record for ``inputs``.

        Raises:
            CheckFailed: a wrong answer, with the message the student sees.
            RecordError: the values are not what this check's probe writes.
        """
        if self.decide is None:
            raise RuntimeError(f"the check {self.grade_id} has no judge")  # a grader bug, caught by tests
        self.decide(inputs, Record(values))


_REGISTRY: dict[str, Check] = {}


def check(grade_id: str, inputs: Callable[[int], Inputs]) -> Callable[[Probe], Check]:
    """Decorator: declare the probe of the check of test cell ``grade_id``, with its ``inputs``.

    The decorated function's name must be ``grade_id``: hidden test cells call the check by it.

    Raises:
        ValueError: if the name differs from ``grade_id`` or the grade_id is declared twice.
    """

    def declare(probe: Probe) -> Check:
        if probe.__name__ != grade_id:
            raise ValueError(f"the probe of {grade_id} is named {probe.__name__}; name it after its grade_id")
        if grade_id in _REGISTRY:
            raise ValueError(f"the check {grade_id} is declared twice")
        declared = Check(grade_id, inputs, probe)
        declared.__doc__ = probe.__doc__
        _REGISTRY[grade_id] = declared
        return declared

    return declare


def registry(package: str = __name__) -> dict[str, Check]:
    """Every check declared in ``package`` (this one, with every homework's, by default) by
    ``grade_id``, after importing each of its modules."""
    path = importlib.import_module(package).__path__
    for module in pkgutil.walk_packages(path, prefix=f"{package}."):
        importlib.import_module(module.name)
    return {gid: c for gid, c in _REGISTRY.items() if c.probe.__module__.startswith(f"{package}.")}


def checks_of(package: str) -> Callable[[str], Check]:
    """The module ``__getattr__`` of a homework's package of checks, so that a hidden test cell's
    ``checks.a2_gradients`` finds the check wherever in ``package`` it is declared.

    Raises:
        AttributeError: (from the returned function) for a name no module of ``package`` declares.
    """

    def lookup(name: str) -> Check:
        found = registry(package).get(name)
        if found is None:
            raise AttributeError(f"no check named {name!r} is declared in {package}")
        return found

    return lookup


def find(grade_id: str) -> Check | None:
    """The check of test cell ``grade_id``, or ``None`` if no check is declared for it."""
    return _REGISTRY.get(grade_id) or registry().get(grade_id)


# ---------------------------------------------------------------- what the kernel notices
#: Builtins that run code given as data: a hook that is one of them was installed to run a payload.
_CODE_RUNNERS = {exec, eval, compile, __import__}


def _code_files(obj: object) -> list[str]:
    """The files the Python code of a hook was compiled from (``co_filename``): of a function, a
    bound method's function, a ``functools.partial``'s function, a class's methods, or a callable
    object's ``__call__``; ``["<builtin>"]`` for a builtin that runs code given as data, ``[]`` for
    other builtins. Read from the code objects, which the notebook cannot rename as it can
    ``__module__`` or ``__qualname__``."""
    import functools

    if isinstance(obj, functools.partial):
        return _code_files(obj.func)
    if inspect.ismethod(obj):
        obj = obj.__func__
    if inspect.isfunction(obj):
        return [obj.__code__.co_filename]
    if inspect.isbuiltin(obj):
        return ["<builtin>"] if obj in _CODE_RUNNERS else []
    cls = obj if isinstance(obj, type) else type(obj)
    members = [*vars(cls).values(), *(getattr(obj, "__dict__", {}).values() if cls is not obj else [])]
    members = [getattr(m, "__func__", getattr(m, "fget", m)) for m in members]  # static, class methods, properties
    return [f.__code__.co_filename for f in members if inspect.isfunction(f)]


@cache
def _installed_roots() -> tuple[str, ...]:
    """Folders whose files are installed code: the interpreter's prefixes, site-packages, and the
    two packages of this course (an editable install lives outside site-packages)."""
    import site

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # autograder/
    spec = importlib.util.find_spec("course_lib")
    if spec is not None and spec.submodule_search_locations:
        roots.update(spec.submodule_search_locations)
    return tuple(sorted(os.path.realpath(r) + os.sep for r in roots if r))


def foreign_code(obj: object) -> str | None:
    """Where ``obj``'s code was defined if that is not an installed package (a notebook cell, an
    ``exec``'d string, a file the notebook wrote), else ``None``."""
    for filename in _code_files(obj):
        if filename.startswith("<frozen "):  # the standard library's frozen modules (importlib)
            continue
        path = os.path.realpath(filename) if os.path.isabs(filename) else filename
        if not path.startswith(_installed_roots()):
            return filename
    return None


def _hooks(shell: Any) -> Iterator[tuple[str, object]]:
    """``(where, hook)`` for every place of the IPython shell that runs code of its own beside a cell."""
    manager = getattr(shell, "input_transformer_manager", None)
    for name, value in (vars(manager) if manager is not None else {}).items():
        if isinstance(value, list):
            yield from ((f"input_transformer_manager.{name}", hook) for hook in value)
    for name in ("input_transformers_post", "ast_transformers"):
        yield from ((name, hook) for hook in getattr(shell, name, None) or [])
    for event, callbacks in getattr(getattr(shell, "events", None), "callbacks", {}).items():
        yield from ((f"events[{event!r}]", callback) for callback in callbacks)
    hooks = getattr(shell, "hooks", None)
    for name, dispatcher in hooks.items() if isinstance(hooks, dict) else []:
        for entry in getattr(dispatcher, "chain", [(0, dispatcher)]):
            yield f"hooks.{name}", entry[1] if isinstance(entry, tuple) else entry
    for name, value in vars(shell).items():  # methods replaced on the instance (run_cell = ...)
        if callable(value) and not isinstance(value, type):
            yield f"shell.{name}", value
    yield from (("sys.meta_path", finder) for finder in sys.meta_path)


def kernel_notes() -> list[str]:
    """Code the notebook installed in the kernel that runs beside the checks, described.

    Every list of the shell's ``input_transformer_manager``, its post-input and AST transformers,
    event callbacks, hooks, methods replaced on the shell, import finders, exception handlers and
    trace or profile functions: each is identified by where its code was defined
    (:func:`foreign_code`), not by the names and modules the notebook can set. A hostile kernel can
    hide them (or forge the whole record), so this only ever fails a cell, and the judges never
    rest on it.
    """
    import threading

    notes = []
    for name, hook in (
        ("sys.settrace", sys.gettrace()),
        ("sys.setprofile", sys.getprofile()),
        ("threading.settrace", threading.gettrace()),
        ("threading.setprofile", threading.getprofile()),
    ):
        if hook is not None:
            notes.append(f"{name}({getattr(hook, '__name__', type(hook).__name__)})")
    try:
        from IPython import get_ipython
    except ImportError:
        return notes
    shell = get_ipython()
    if shell is None:
        return notes
    for where, hook in _hooks(shell):
        place = foreign_code(hook)
        if place is not None:
            notes.append(f"{where}: {getattr(hook, '__name__', type(hook).__name__)} (defined in {place})")
    if getattr(shell, "custom_exceptions", ()):
        notes.append("set_custom_exc")
    return notes
