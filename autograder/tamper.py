"""A static scan of submitted notebooks for code that reaches for the grader or smuggles code in.

It runs outside the kernel, before grading, on every cell the student can edit, parsed with :mod:`ast` so that
aliases, attribute chains and names built from constant strings are read as the interpreter reads them. A
:data:`TAMPERING` finding zeroes the notebook's autograded points; a :data:`REVIEW` finding is only reported
(``docs/grading.md``, "The static scan", lists both).

It is one layer, not a proof: the verdicts come from judges outside the kernel (:mod:`autograder.judging`)
and must hold even when this scan sees nothing.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

#: Code with no business in an answer that reaches the grader or the interpreter beside it (importing the
#: grader, editing modules, builtins or namespaces, the IPython shell beyond :data:`SHELL_ALLOWED`, trace
#: functions, frame walking, disguised functions): the notebook's autograded points are set to zero and the
#: submission is reported.
TAMPERING = "tampering"
#: Routes that can smuggle code past a reader (unpickling, encoders and decompressors, ``ctypes``, ``exec``,
#: dynamic imports, Python files written, ``sys.path`` edits, shell commands, magics): reported for review;
#: the points stand.
REVIEW = "review"

#: Modules whose functions the checks or the judges rely on; replacing any of their attributes is tampering.
PROTECTED = ("torch", "numpy", "gymnasium", "IPython", "course_lib", "builtins", "sys", "PIL", "autograder")
#: Importing these reaches the grader or the reference answers.
GRADER = ("autograder", "course_lib.solutions")
#: Names (resolved) whose use is tampering, with why.
TAMPERING_NAMES = {
    "sys.modules": "edits loaded modules (sys.modules)",
    "builtins": "touches Python's builtins",
    "__builtins__": "touches Python's builtins",
    "sys.settrace": "installs a trace function (sys.settrace)",
    "sys.setprofile": "installs a profile function (sys.setprofile)",
    "threading.settrace": "installs a trace function (threading.settrace)",
    "threading.setprofile": "installs a profile function (threading.setprofile)",
    "sys.addaudithook": "installs an audit hook",
    "sys._getframe": "walks the interpreter's frames",
    "inspect.currentframe": "walks the interpreter's frames",
    "inspect.stack": "walks the interpreter's frames",
    "sys._current_frames": "walks the interpreter's frames",
    "inspect.getouterframes": "walks the interpreter's frames",
    "inspect.getinnerframes": "walks the interpreter's frames",
    "inspect.trace": "walks the interpreter's frames",
    "traceback.walk_stack": "walks the interpreter's frames",
    "traceback.walk_tb": "walks the interpreter's frames",
    "gc.get_objects": "walks the interpreter's objects",
    "gc.get_referrers": "walks the interpreter's objects",
    "gc.get_referents": "walks the interpreter's objects",
    "threading.settrace_all_threads": "installs a trace function (threading.settrace_all_threads)",
    "threading.setprofile_all_threads": "installs a profile function (threading.setprofile_all_threads)",
}
#: The only attributes of the IPython shell an answer may use, each reported for review with why:
#: every other one (transformers, events, hooks, ``run_cell``, ``user_ns``, ``kernel``...) is
#: tampering, however the shell is reached (:data:`SHELL_GETTERS`).
SHELL_ALLOWED = {
    "system": "runs a shell command (get_ipython().system)",
    "getoutput": "runs a shell command (get_ipython().getoutput)",
    "run_line_magic": "runs an IPython magic (get_ipython().run_line_magic)",
    "magic": "runs an IPython magic (get_ipython().magic)",
}
#: Names (resolved) whose call gives the IPython shell, the kernel or its application.
SHELL_GETTERS = {"get_ipython", "IPython.get_ipython", "IPython.core.getipython.get_ipython"}
#: Classes whose ``instance()`` (or ``_instance``) is the shell, the kernel or its application.
SHELL_CLASSES = re.compile(r"(InteractiveShell|IPKernelApp|IPythonKernel|Kernel|Application)$")
#: Attributes no answer needs: a function's code and globals.
CODE_ATTRIBUTES = {"__code__", "__globals__", "__closure__", "__builtins__", "__dict__"}
#: Attributes of frames, tracebacks, generators and coroutines that lead to other frames' variables.
FRAME_ATTRIBUTES = {"f_back", "f_globals", "f_locals", "f_builtins", "tb_frame", "gi_frame", "cr_frame", "ag_frame"}
#: Attributes that say where code was defined: setting them disguises a notebook's function.
DISGUISE_ATTRIBUTES = {"__module__", "__qualname__", "__name__"}
#: IPython magics an answer may use without being reported.
PLAIN_MAGICS = {"matplotlib", "time", "timeit"}
#: Names (resolved) whose use, or the use of anything under them, is reported for review, with why.
REVIEW_NAMES = {
    "pickle": "unpickles data (pickle)",
    "_pickle": "unpickles data (pickle)",
    "dill": "unpickles data (dill)",
    "cloudpickle": "unpickles data (cloudpickle)",
    "marshal": "loads code objects (marshal)",
    "shelve": "unpickles data (shelve)",
    "base64": "decodes hidden data (base64)",
    "binascii": "decodes hidden data (binascii)",
    "codecs": "encodes or decodes hidden data (codecs)",
    "zlib.decompress": "decompresses hidden data (zlib)",
    "lzma.decompress": "decompresses hidden data (lzma)",
    "bz2.decompress": "decompresses hidden data (bz2)",
    "gzip.decompress": "decompresses hidden data (gzip)",
    "ctypes": "calls native code (ctypes)",
    "cffi": "calls native code (cffi)",
    "importlib": "imports modules dynamically (importlib)",
    "runpy": "runs modules dynamically (runpy)",
    "types.FunctionType": "builds functions from code objects",
    "types.CodeType": "builds code objects",
    "subprocess": "runs other programs (subprocess)",
    "os.system": "runs a shell command (os.system)",
    "os.popen": "runs a shell command (os.popen)",
    "torch.load": "unpickles data (torch.load)",
    "sys.path": "changes where modules are imported from (sys.path)",
}
#: Builtins whose call is reported for review.
REVIEW_CALLS = {
    "exec": "runs generated code (exec)",
    "eval": "runs generated code (eval)",
    "compile": "compiles generated code (compile)",
    "__import__": "imports modules dynamically (__import__)",
}
#: Strings in code that name the grader's files.
GRADER_STRINGS = re.compile(r"autograder|course_lib[/\\.]solutions")
#: A string naming the MIME type of the checks' records (``autograder.records.MIME``).
RECORD_STRINGS = re.compile(r"vnd\.course\.probe")
FILE_STRINGS = re.compile(r"gradebook|site-packages|\.venv\b")


@dataclass(frozen=True)
class Finding:
    """One suspicious construct: where it is, why it is suspicious and how serious."""

    notebook: str
    cell: str
    line: int
    code: str
    reason: str
    severity: str

    def __str__(self) -> str:
        return f"{self.notebook} cell {self.cell} line {self.line}: {self.reason} ({self.code.strip()[:80]!r})"


def _editable(cell: nbformat.NotebookNode) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.cell_type == "code" and not meta.get("locked", False) and not meta.get("grade", False)


def _python_source(source: str) -> tuple[str, list[tuple[int, str]]]:
    """The cell as Python (IPython's ``%magic`` and ``!shell`` lines blanked), and ``(line, reason)``
    for the shell commands and the magics other than :data:`PLAIN_MAGICS` it runs."""
    lines, magics = [], []
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            lines.append("")
            name = stripped.lstrip("%!").split(maxsplit=1)[0] if stripped.lstrip("%!") else ""
            if stripped.startswith(("!", "%system", "%%bash", "%%sh", "%%script", "%pip", "%conda", "%sx")):
                magics.append((number, "runs a shell command (!)"))
            elif stripped.startswith("%") and name not in PLAIN_MAGICS:
                magics.append((number, f"runs an IPython magic (%{name})"))
        else:
            lines.append(line)
    return "\n".join(lines), magics


def _constant_string(node: ast.AST) -> str | None:
    """The value of a string made of constants (``"vae" + "_loss"``, ``"a" "b"``), or ``None``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _constant_string(node.left), _constant_string(node.right)
        return left + right if left is not None and right is not None else None
    return None


def _is_shell_class(name: str | None, attribute: str) -> bool:
    """Whether ``name`` is ``<...>.<Class>.<attribute>`` for a class of :data:`SHELL_CLASSES`."""
    if not name or not name.endswith("." + attribute):
        return False
    owner = name[: -len(attribute) - 1].rsplit(".", 1)[-1]
    return bool(SHELL_CLASSES.search(owner))


def _replaces_code(name: str | None) -> bool:
    """Whether ``name`` (``torch.allclose``) is a function, class or module of an importable module:
    what assigning to it would replace. Settings (``torch.backends.cudnn.benchmark``) are not."""
    if name is None:
        return True
    module, _, attribute = name.rpartition(".")
    parts = module.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes down to the owner
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            owner = getattr(owner, part, None)
        if owner is None or not hasattr(owner, attribute):
            return True
        return callable(getattr(owner, attribute)) or inspect.ismodule(getattr(owner, attribute))
    return True


class _Scanner(ast.NodeVisitor):
    """Collects ``(line, reason, severity)`` for one cell, resolving names through its aliases.

    :meth:`scan` visits the tree depth first, in source order, with a stack of its own rather than
    recursion, so that no code (a sum of thousands of terms) can reach Python's recursion limit: each
    ``visit_<Node>`` method says whether to go on into the node's children.
    """

    def __init__(self, aliases: dict[str, str]):
        self.aliases = aliases  # shared by the cells of a notebook, in order
        self.hits: list[tuple[int, str, str]] = []

    def hit(self, node: ast.AST, reason: str, severity: str) -> None:
        self.hits.append((getattr(node, "lineno", 1), reason, severity))

    def scan(self, tree: ast.AST) -> None:
        """Visit every node of ``tree`` that its ancestors' visitors go into, parents before children."""
        stack = [tree]
        while stack:
            node = stack.pop()
            visit = getattr(self, f"visit_{type(node).__name__}", None)
            if visit is None or visit(node):
                stack.extend(reversed(list(ast.iter_child_nodes(node))))

    # -- names
    def resolve(self, node: ast.AST) -> str | None:
        """The dotted name an expression refers to (``p.loads`` -> ``pickle.loads``), if it is one.

        An attribute chain is followed in a loop, so its length reaches no recursion limit."""
        attributes = []
        while isinstance(node, ast.Attribute):
            attributes.append(node.attr)
            node = node.value
        base = self._resolve_base(node)
        return ".".join([base, *reversed(attributes)]) if base else None

    def _resolve_base(self, node: ast.AST) -> str | None:
        """What a name or a call at the root of an attribute chain refers to."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Call):
            func = self.resolve(node.func)
            if func in SHELL_GETTERS or _is_shell_class(func, "instance"):
                return "IPython.shell"
            if func == "getattr" and len(node.args) >= 2:
                base, name = self.resolve(node.args[0]), _constant_string(node.args[1])
                return f"{base}.{name}" if base and name else None
            if func in ("__import__", "importlib.import_module") and node.args:
                return _constant_string(node.args[0])
        return None

    def check_name(self, node: ast.AST, name: str) -> None:
        if name.startswith(GRADER) or name == "course_lib.solutions":
            self.hit(node, f"reaches the grader or the reference answers ({name})", TAMPERING)
            return
        if name.startswith("IPython.shell."):
            attribute = name.split(".")[2]
            if attribute in SHELL_ALLOWED:
                self.hit(node, SHELL_ALLOWED[attribute], REVIEW)
            else:
                self.hit(node, f"reaches into the IPython shell (get_ipython().{attribute})", TAMPERING)
            return
        if _is_shell_class(name, "_instance"):
            self.hit(node, f"reaches the IPython shell or kernel ({name})", TAMPERING)
            return
        for forbidden, why in TAMPERING_NAMES.items():
            if name == forbidden or name.startswith(forbidden + "."):
                self.hit(node, why, TAMPERING)
                return
        for prefix, why in REVIEW_NAMES.items():
            if name == prefix or name.startswith(prefix + "."):
                self.hit(node, why, REVIEW)
                return

    def check_shell_use(self, node: ast.AST) -> None:
        """The shell (or a getter of it) used otherwise than for one attribute, kept in a name or
        compared: handed to other code, it can be reached there without this scan seeing how."""
        parent = getattr(node, "parent", None)
        getter = self.resolve(node) in SHELL_GETTERS
        if getter and isinstance(parent, ast.Call) and parent.func is node:
            return  # get_ipython(): the call is what is checked
        if isinstance(parent, ast.Attribute) and parent.value is node:
            return  # get_ipython().x: check_name judges x
        if isinstance(parent, ast.Assign) and all(isinstance(t, ast.Name) for t in parent.targets):
            return  # ip = get_ipython(): uses of ip are checked
        if isinstance(parent, ast.Compare):
            return  # get_ipython() is None
        what = "get_ipython" if getter else "the IPython shell"
        self.hit(node, f"hands {what} to other code", TAMPERING)

    # -- imports bind aliases
    def visit_Import(self, node: ast.Import) -> bool:
        for alias in node.names:
            self.aliases[alias.asname or alias.name.split(".")[0]] = (
                alias.name if alias.asname else alias.name.split(".")[0]
            )
            self.check_name(node, alias.name)
        return False

    def visit_ImportFrom(self, node: ast.ImportFrom) -> bool:
        module = node.module or ""
        for alias in node.names:
            full = f"{module}.{alias.name}" if module else alias.name
            self.aliases[alias.asname or alias.name] = full
            self.check_name(node, full)
        return False

    # -- uses
    def visit_Attribute(self, node: ast.Attribute) -> bool:
        if node.attr in CODE_ATTRIBUTES:
            self.hit(node, f"reaches into an object's internals ({node.attr})", TAMPERING)
        if node.attr in FRAME_ATTRIBUTES:
            self.hit(node, f"walks the interpreter's frames ({node.attr})", TAMPERING)
        if node.attr in DISGUISE_ATTRIBUTES and isinstance(node.ctx, ast.Store | ast.Del):
            self.hit(node, f"disguises where code was defined ({node.attr} = ...)", TAMPERING)
        name = self.resolve(node)
        if name == "IPython.shell" or name in SHELL_GETTERS:
            self.check_shell_use(node)
        if name is not None:
            self.check_name(node, name)
        return name is None  # a name is judged whole; an expression's parts one by one

    def visit_Name(self, node: ast.Name) -> bool:
        name = self.aliases.get(node.id, node.id)
        if name == "IPython.shell" or name in SHELL_GETTERS:
            self.check_shell_use(node)
        if name in REVIEW_CALLS or name in ("globals", "locals", "vars"):
            return False  # judged where they are called
        self.check_name(node, name)
        return False

    def visit_Call(self, node: ast.Call) -> bool:
        func = self.resolve(node.func)
        if self.resolve(node) == "IPython.shell":
            self.check_shell_use(node)
        if func in REVIEW_CALLS:
            self.hit(node, REVIEW_CALLS[func], REVIEW)
        if func in ("getattr", "setattr", "delattr", "hasattr") and len(node.args) >= 2:
            target = self.resolve(node.args[0])
            if _constant_string(node.args[1]) is None:
                self.hit(node, f"uses a name built at run time ({func})", REVIEW)
            name = _constant_string(node.args[1])
            if target == "IPython.shell":
                attribute = name or "<a name built at run time>"
                if attribute not in SHELL_ALLOWED or func != "getattr":
                    self.hit(node, f"reaches into the IPython shell ({func}(get_ipython(), {attribute!r}))", TAMPERING)
            if func in ("setattr", "delattr") and name in DISGUISE_ATTRIBUTES:
                self.hit(node, f"disguises where code was defined ({func} {name})", TAMPERING)
            protected = func in ("setattr", "delattr") and target and target.split(".")[0] in PROTECTED
            if protected and (name is None or _replaces_code(f"{target}.{name}")):
                self.hit(node, f"replaces an attribute of {target} ({func})", TAMPERING)
            if func == "getattr":
                resolved = self.resolve(node)
                if resolved:
                    self.check_name(node, resolved)
        if func == "vars" and node.args and self._protected(node.args[0]):
            self.hit(node, "edits a module's namespace (vars)", TAMPERING)
        if func in ("open", "io.open") and self._writes(node) and self._names_code(node.args[:1]):
            self.hit(node, "writes a Python file (to import later?)", REVIEW)
        writes = isinstance(node.func, ast.Attribute) and node.func.attr in ("write_text", "write_bytes")
        if writes and self._names_code([node.func.value]):
            self.hit(node, "writes a Python file (to import later?)", REVIEW)
        if func in ("numpy.load", "np.load") and any(
            k.arg == "allow_pickle" and getattr(k.value, "value", False) is True for k in node.keywords
        ):
            self.hit(node, "unpickles data (np.load(allow_pickle=True))", REVIEW)
        return True

    def visit_Constant(self, node: ast.Constant) -> bool:
        if isinstance(node.value, str):
            if RECORD_STRINGS.search(node.value):
                self.hit(node, "writes records of the hidden checks (their MIME type)", TAMPERING)
            elif GRADER_STRINGS.search(node.value):
                self.hit(node, "names the grader's files", TAMPERING)
            elif FILE_STRINGS.search(node.value):
                self.hit(node, "names the grader's files", REVIEW)
        return False

    # -- assignments
    def _protected(self, node: ast.AST) -> bool:
        name = self.resolve(node)
        return name is not None and name.split(".")[0] in PROTECTED

    def _names_code(self, nodes: list[ast.AST]) -> bool:
        return any(
            isinstance(n, ast.Constant) and isinstance(n.value, str) and re.search(r"\.(py|pth|so)\b", n.value)
            for node in nodes
            for n in ast.walk(node)
        )

    @staticmethod
    def _writes(node: ast.Call) -> bool:
        mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
        return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and any(c in mode.value for c in "wax")

    def _target(self, target: ast.AST) -> None:
        if isinstance(target, ast.Attribute) and self._protected(target.value):
            name = self.resolve(target)
            if _replaces_code(name):  # torch.allclose = ..., not torch.backends.cudnn.benchmark = True
                self.hit(target, f"replaces {name}", TAMPERING)
        elif isinstance(target, ast.Subscript):
            base = target.value
            call = self.resolve(base.func) if isinstance(base, ast.Call) else None
            if call in ("globals", "locals", "vars") or (isinstance(base, ast.Attribute) and base.attr == "__dict__"):
                self.hit(target, "edits a namespace directly", TAMPERING)
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self._target(element)

    def visit_Assign(self, node: ast.Assign) -> bool:
        for target in node.targets:
            self._target(target)
        source = self.resolve(node.value)
        if source is not None and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            self.aliases[node.targets[0].id] = source  # t = torch; setattr(t, ...)
        return True

    def visit_AugAssign(self, node: ast.AugAssign) -> bool:
        self._target(node.target)
        return True


def scan_notebook(path: Path) -> list[Finding]:
    """Findings in the student-editable code cells of one notebook, in order (empty when clean).

    Student-editable: answer cells and unlocked cells (nbgrader restores locked and test cells from the
    source anyway).

    A cell that does not parse as Python (it will fail when it runs) is skipped; one nested too deeply
    for Python's parser (the kernel cannot compile it either) is reported for review, unread.
    """
    nb = nbformat.read(path, as_version=4)
    findings: list[Finding] = []
    aliases: dict[str, str] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            code, magics = _python_source(cell.source)
            try:
                tree = ast.parse(code)
            except SyntaxError:
                continue
            except (RecursionError, MemoryError):
                if _editable(cell):
                    name = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"#{index}"
                    reason = "is nested too deeply for the scan (and Python's compiler) to read"
                    findings.append(Finding(path.name, name, 1, cell.source.split("\n", 1)[0][:80], reason, REVIEW))
                continue
            for node in ast.walk(tree):
                for child in ast.iter_child_nodes(node):
                    child.parent = node  # type: ignore[attr-defined]
            scanner = _Scanner(aliases)
            scanner.scan(tree)  # locked cells too: their imports bind names the answers use
            if not _editable(cell):
                continue
            name = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"#{index}"
            lines = cell.source.splitlines()
            hits = scanner.hits + [(number, reason, REVIEW) for number, reason in magics]
            seen = set()
            for number, reason, severity in sorted(hits):
                if reason in seen:  # once per cell, at its first line
                    continue
                seen.add(reason)
                text = lines[number - 1] if 0 < number <= len(lines) else ""
                findings.append(Finding(path.name, name, number, text, reason, severity))
    return findings
