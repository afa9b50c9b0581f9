"""A student's ``torch.nn`` layers, described in the kernel and rebuilt in the grader from an allowlist.

The probe records a description of the module tree (:func:`describe`) and its ``state_dict``
(:func:`state_values`); the judge rebuilds it (:func:`rebuild`) with PyTorch's own classes for the
layers of :data:`ALLOWED` (any other module becomes an :class:`Opaque` container) and loads the
state strictly. A description that does not rebuild, or weights that do not fit, raise
:class:`~autograder.records.RecordError`; layers are sized on the ``meta`` device first.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from autograder.records import RecordError
from course_lib import rules

#: ``torch.nn`` classes the judges rebuild (exact classes: a subclass is the student's own code), declared
#: in :data:`course_lib.rules.TORCH_LAYERS`, whose visible test shows the rule at Validate.
ALLOWED: dict[str, type[nn.Module]] = {cls.__name__: cls for cls in rules.TORCH_LAYERS}
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
#: Constructor arguments never read back (where a module lives, not what it computes).
_SKIPPED = {"self", "device", "dtype"}
#: The most parameters and buffer elements a rebuilt description may hold.
MAX_PARAMETERS = 20_000_000
#: The deepest module tree a description may have.
MAX_DEPTH = 12


class Opaque(nn.Module):
    """A module of the student's own class, rebuilt as a container of its children only.

    The judge cannot run the student's ``forward``; calling this one raises
    :class:`~autograder.records.RecordError`, which judges never do on a tree that
    :func:`runnable` refuses.
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, *args: Any) -> Any:
        raise RecordError(f"the grader cannot run the forward of {self.kind}, a class of the notebook's own")

    def extra_repr(self) -> str:
        return self.kind


# ---------------------------------------------------------------- kernel side
def _plain(value: Any) -> Any:
    """``value`` as JSON (tuples become lists), or raise ``TypeError`` for anything else."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple | list | torch.Size):
        return [_plain(v) for v in value]
    raise TypeError(type(value).__name__)


def _arguments(module: nn.Module) -> dict[str, Any] | None:
    """The constructor arguments of an allowlisted ``module``, read back from its attributes."""
    args: dict[str, Any] = {}
    for name, parameter in inspect.signature(type(module).__init__).parameters.items():
        if name in _SKIPPED or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name == "bias" and not isinstance(getattr(module, "bias", None), bool):
            args[name] = getattr(module, "bias", None) is not None  # a Parameter, or None
        elif name == "num_parameters" and isinstance(module, nn.PReLU):
            args[name] = module.weight.numel()
        elif name == "init" and isinstance(module, nn.PReLU):
            continue  # the weight is loaded
        elif hasattr(module, name):
            try:
                args[name] = _plain(getattr(module, name))
            except TypeError:
                return None
    return args


def describe(module: nn.Module) -> dict[str, Any]:
    """The JSON description of ``module``'s tree, for :func:`rebuild` (kernel side).

    Each node is ``{"type": class name, "args": {...} or None, "extra": extra_repr(), "children":
    [[name, node], ...]}``; ``args`` is ``None`` for a class outside :data:`ALLOWED` (the node is then
    rebuilt as an :class:`Opaque` container).
    """
    allowed = ALLOWED.get(type(module).__name__) is type(module)
    container = isinstance(module, _CONTAINERS)
    return {
        "type": type(module).__name__,
        "args": ({} if container else _arguments(module)) if allowed else None,
        "extra": module.extra_repr() if allowed else "",
        "children": [[name, describe(child)] for name, child in module.named_children()],
    }


def state_values(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """Every tensor of ``module.state_dict()`` as record values named ``<prefix>.<key>`` (kernel side)."""
    return {f"{prefix}.{key}": value.detach().clone() for key, value in module.state_dict().items()}


# ---------------------------------------------------------------- judge side
def _node(desc: Any, where: str, depth: int) -> nn.Module:
    if depth > MAX_DEPTH:
        raise RecordError(f"the description of {where} is nested deeper than {MAX_DEPTH}")
    if (
        not isinstance(desc, dict)
        or not isinstance(desc.get("type"), str)
        or not isinstance(desc.get("children"), list)
    ):
        raise RecordError(f"the description of {where} is not a module")
    children = []
    for item in desc["children"]:
        named = isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
        if not (named and (item[0].isidentifier() or item[0].isdigit())):
            raise RecordError(f"the description of {where} has a malformed child")
        children.append((item[0], _node(item[1], f"{where}.{item[0]}", depth + 1)))
    kind, args = desc["type"], desc.get("args")
    cls = ALLOWED.get(kind)
    if cls is None or args is None:
        module: nn.Module = Opaque(kind)
        for name, child in children:
            module.add_module(name, child)
        return module
    if not isinstance(args, dict):
        raise RecordError(f"the arguments of {where} ({kind}) are not a dict")
    if cls in _CONTAINERS:
        module = cls()
        for name, child in children:
            module.add_module(name, child)
        return module
    if children:
        raise RecordError(f"{where} ({kind}) has children; PyTorch's {kind} has none")
    try:
        with torch.device("meta"):
            module = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
    except Exception as err:  # arguments PyTorch refuses: a description no module has
        raise RecordError(f"{where} ({kind}) does not rebuild from {args} ({type(err).__name__}: {err})") from None
    if module.extra_repr() != desc.get("extra"):
        raise RecordError(f"{where} ({kind}) rebuilds as {module.extra_repr()!r}, described as {desc.get('extra')!r}")
    return module


def rebuild(desc: Any, state: dict[str, torch.Tensor] | None = None, where: str = "model") -> nn.Module:
    """The module tree of a :func:`describe` description, in eval mode (judge side).

    With ``state``, every parameter and buffer is loaded from it (``strict``: no key missing, none
    left over, every shape equal). Without it, tensors are left uninitialised on the CPU, for the
    judge to load its own weights into.

    Raises:
        RecordError: if the description is malformed, names an allowlisted class with arguments
            PyTorch refuses, holds more than :data:`MAX_PARAMETERS` elements, or ``state`` does not
            fit it.
    """
    module = _node(desc, where, 0)
    size = sum(t.numel() for t in module.state_dict().values())
    if size > MAX_PARAMETERS:
        raise RecordError(f"{where} holds {size:,} parameters and buffers, more than the grader rebuilds")
    module = module.to_empty(device="cpu")
    if state is not None:
        own = module.state_dict()
        want = {k: tuple(v.shape) for k, v in own.items()}
        got = {k: tuple(v.shape) for k, v in state.items()}
        if want != got:
            missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
            differ = sorted(k for k in set(want) & set(got) if want[k] != got[k])
            raise RecordError(
                f"the weights of {where} do not fit its layers (missing {missing}, extra {extra}, "
                f"other shapes {differ})"
            )
        module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    return module.eval()


def reset_parameters(module: nn.Module, seed: int) -> nn.Module:
    """Reset every allowlisted layer of ``module`` (``reset_parameters()``, PyTorch's own
    initialisation), in ``modules()`` order, with the global generators seeded with ``seed``.

    The same tree gets the same weights in the kernel and in the judge: the initial weights of a
    training the judge did not watch. Layers of the student's own classes are left as they are.
    Returns ``module``.
    """
    from autograder.checks import seeded

    with seeded(seed):
        for layer in module.modules():
            if ALLOWED.get(type(layer).__name__) is type(layer) and hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
    return module


def runnable(module: nn.Module) -> bool:
    """Whether the judge can run ``module``'s forward: no :class:`Opaque` module in its tree, and no
    ``ModuleList``/``ModuleDict`` (which have none)."""
    return not any(isinstance(m, Opaque | nn.ModuleList | nn.ModuleDict) for m in module.modules())


def parameter_count(module: nn.Module) -> int:
    """The number of parameters of a rebuilt tree (what ``sum(p.numel() for p in parameters())`` gives)."""
    return sum(p.numel() for p in module.parameters())
