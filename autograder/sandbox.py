"""Each grading kernel in a sandbox that needs no privilege: bubblewrap in a user namespace of its own.

The kernel sees an allowlist, not the machine (:class:`View`): the system's programs and libraries,
the Python environment and the two packages it imports, read-only (``course_lib/solutions`` shown
empty), a private home folder and ``/tmp``, and its sockets; no course folder, submissions, ``--out``,
exchange, gradebook or home folder of the machine, wherever they are. It has no network, an
environment built from :func:`kernel_environment` (nothing of the grader's), and CPU, memory,
file-size and process limits (``prlimit``). The process limit counts the processes of the kernel's
own user namespace (Linux >= 5.14), so a fork bomb in one kernel never stops another, whoever
graded it. Started as root, the grader hands each kernel to ``nobody`` first (:func:`as_unprivileged`).

Requires bubblewrap and unprivileged user namespaces; :mod:`autograder.preflight` says what is
missing and how to fix it.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: The kernel's user and group id inside its namespace; started as root, the grader also hands each
#: kernel to this user (``nobody``) outside it.
NOBODY = 65534
#: The kernel's home, a private tmpfs; it works in ``<KERNEL_HOME>/<assignment>``. No path of the
#: grading machine shows in what a notebook prints about where it runs.
KERNEL_HOME = Path("/home/student")
#: Where the kernel reads its connection file, copied in by bwrap from the grader's (which the
#: kernel's user may not be allowed to read).
CONNECTION_FILE = "/tmp/.kernel-connection.json"
#: Environment variable of nbgrader's process holding the kernels' :class:`View` (JSON), so that it
#: can tell a file the sandbox hid from one the notebook failed to write.
VIEW_ENV = "COURSE_SANDBOX_VIEW"
#: Folders of the machine every kernel sees read-only, where they exist (with ``/usr``).
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Files of ``/etc`` every kernel sees read-only, where they exist: the dynamic linker's cache and
#: Debian's alternatives (links some programs go through), the time zone, fontconfig's settings.
SYSTEM_ETC = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/fonts",
)


class SandboxUnavailableError(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here (the message says which and how to fix it)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one grading kernel.

    Attributes:
        cpu_seconds: CPU time of the kernel process (RLIMIT_CPU), seconds.
        memory_bytes: address space of the kernel (RLIMIT_AS), bytes; a larger allocation
            raises MemoryError in the student's code.
        processes: processes and threads of the kernel's user namespace (RLIMIT_NPROC); stops fork bombs.
        file_bytes: largest file the kernel may write (RLIMIT_FSIZE), bytes.
        tmp_bytes: size of the private /tmp and of the home folder (tmpfs), bytes each.
    """

    cpu_seconds: int = 900
    memory_bytes: int = 6 * 2**30
    processes: int = 256
    file_bytes: int = 256 * 2**20
    tmp_bytes: int = 512 * 2**20


@dataclass(frozen=True)
class View:
    """What a sandboxed kernel sees of the machine's files besides :data:`SYSTEM`, its home and ``/tmp``.

    Attributes:
        shown: folders shown read-only at their own path (the Python environment, the packages).
        hidden: folders inside them shown empty (the reference answers).
    """

    shown: tuple[Path, ...]
    hidden: tuple[Path, ...] = ()

    @classmethod
    def of_this_python(cls) -> View:
        """The view a kernel of this interpreter needs: its environment (``sys.prefix`` and
        ``sys.base_prefix``) and the ``course_lib`` and ``autograder`` packages wherever they are
        installed (an editable install keeps them in the repository, which stays unseen), without
        ``course_lib/solutions``."""
        spec = importlib.util.find_spec("course_lib")  # found without importing it (and torch)
        course_lib = Path(next(iter(spec.submodule_search_locations))).resolve()
        prefixes = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
        shown = {*prefixes, course_lib, Path(__file__).resolve().parent}
        shown = {p for p in shown if not any(Path(p).is_relative_to(s) for s in SYSTEM)}
        return cls(tuple(sorted(shown)), (course_lib / "solutions",))

    def hides(self, path: Path) -> bool:
        """Whether the kernel cannot see ``path`` (absolute, as the kernel named it): it lies inside
        :attr:`hidden`, outside the view (the system folders, ``/tmp``, the kernel's home, :attr:`shown`),
        or in the machine's ``/tmp``, which the kernel's private one hides (asked in the grader's process)."""
        path = Path(path)
        if any(path.is_relative_to(h) for h in self.hidden):
            return True
        if path.is_relative_to("/tmp"):
            return path.exists()
        seen = (*SYSTEM, *SYSTEM_ETC, "/proc", "/dev", KERNEL_HOME, *self.shown)
        return not any(path.is_relative_to(p) for p in seen)

    def to_json(self) -> str:
        """The view as :data:`VIEW_ENV` holds it."""
        return json.dumps({"shown": [str(p) for p in self.shown], "hidden": [str(p) for p in self.hidden]})

    @classmethod
    def from_json(cls, text: str) -> View:
        """The view :meth:`to_json` wrote."""
        data = json.loads(text)
        return cls(tuple(map(Path, data["shown"])), tuple(map(Path, data["hidden"])))


def require_bwrap() -> str:
    """Path of ``bwrap``.

    Raises:
        SandboxUnavailableError: with what to do about it, if bubblewrap is not installed.
    """
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailableError(
            "bubblewrap (bwrap) is not installed, so submissions cannot be graded in a sandbox. "
            "Install it (`make sandbox`, or `apt-get install bubblewrap`), or pass --no-sandbox "
            "to grade without one (untrusted code then runs with your permissions)."
        )
    return path


def kernel_environment(python: Path | None = None) -> dict[str, str]:
    """The kernel's whole environment: what Python, PyTorch, Jupyter and the course need, and nothing
    of the grader's (no database URL, password, token, credential or instructor path).

    Args:
        python: the kernel's interpreter (default: this one); its folder leads ``PATH``.
    """
    bin_dir = Path(python or sys.executable).parent
    return {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(KERNEL_HOME),
        "USER": "student",
        "LOGNAME": "student",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "MPLBACKEND": "Agg",
        "SDL_VIDEODRIVER": "dummy",
        "SDL_AUDIODRIVER": "dummy",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
        "TQDM_DISABLE": "1",
        # one thread per grading kernel: small models gain little from more
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NBGRADER_EXECUTION": "autograde",  # what nbgrader sets; heavy cells shrink their budget
    }


def _private_ancestors(path: Path) -> list[Path]:
    """Ancestors of ``path`` that other users cannot pass through (``/root`` holding pyenv, a 0700 home)."""
    out = []
    for parent in reversed(Path(path).parents):
        try:
            mode = parent.stat().st_mode
        except OSError:
            continue
        if not mode & stat.S_IXOTH:
            out.append(parent)
    return out


def _folders_below(top: Path, *paths: Path) -> list[Path]:
    """The ancestors of ``paths`` strictly below ``top``, parents first, without repeats."""
    out: list[Path] = []
    for path in paths:
        for parent in reversed(Path(path).parents):
            if top in parent.parents and parent not in out:
                out.append(parent)
    return out


def _system_view() -> list[str]:
    """bwrap arguments showing :data:`SYSTEM` and :data:`SYSTEM_ETC` read-only, as the host lays them
    out (``/bin``, ``/lib``... are links into ``/usr`` on a merged-/usr system, folders elsewhere)."""
    argv = []
    for top in SYSTEM:
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    for etc in SYSTEM_ETC:
        argv += ["--ro-bind-try", etc, etc]
    return argv


@functools.cache
def identity_files() -> Path:
    """A folder of this process holding ``passwd``, ``group`` and ``hosts`` that name only the kernel's
    user and localhost (the kernel's ``/etc/passwd``...); removed when the process ends."""
    folder = Path(tempfile.mkdtemp(prefix="course-etc-"))
    os.chmod(folder, 0o755)
    files = {
        "passwd": f"student:x:{NOBODY}:{NOBODY}:student:{KERNEL_HOME}:/bin/sh\n",
        "group": f"student:x:{NOBODY}:\n",
        "hosts": "127.0.0.1 localhost\n::1 localhost\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text)
        os.chmod(folder / name, 0o644)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def sandboxed(
    command: list[str],
    sockets: Path,
    limits: Limits,
    view: View,
    folder: str = "work",
    files: dict[int, str] | None = None,
    python: Path | None = None,
) -> list[str]:
    """``command`` run in the sandbox: the argv of ``env -i`` with :func:`kernel_environment`, then (as
    root) the step to ``nobody`` (:func:`as_unprivileged`), then bwrap and ``prlimit``.

    Args:
        command: what runs inside, e.g. ``[python, "-m", "ipykernel_launcher", ...]``.
        sockets: a folder of the grader's for this sandbox alone, shown writable: where the kernel
            creates its sockets.
        limits: the resource limits.
        view: the folders shown besides the system's.
        folder: the working folder's name in :data:`KERNEL_HOME` (the assignment's).
        files: open descriptors of the caller whose content bwrap copies to these paths inside.
        python: the interpreter whose folder leads ``PATH`` (default: this one).

    Raises:
        SandboxUnavailableError: if bubblewrap is not installed.
    """
    bwrap = require_bwrap()
    sockets = Path(sockets)
    size = str(limits.tmp_bytes)
    inner = [bwrap, "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
    inner += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    inner += ["--die-with-parent", "--new-session", "--hostname", "grading"]
    inner += ["--disable-userns", *_system_view(), "--proc", "/proc", "--dev", "/dev"]
    for name in ("passwd", "group", "hosts"):
        inner += ["--ro-bind", str(identity_files() / name), f"/etc/{name}"]
    inner += ["--size", size, "--perms", "1777", "--tmpfs", "/tmp"]
    for fd, dest in (files or {}).items():
        inner += ["--file", str(fd), dest]
    for path in view.shown:
        inner += ["--ro-bind", str(path), str(path)]
    for mask in view.hidden:
        if Path(mask).is_dir():
            inner += ["--perms", "0755", "--tmpfs", str(mask), "--remount-ro", str(mask)]
    inner += ["--bind", str(sockets), str(sockets)]
    work = KERNEL_HOME / folder
    inner += ["--size", size, "--perms", "0755", "--tmpfs", str(KERNEL_HOME), "--dir", str(work)]
    inner += ["--remount-ro", "/", "--chdir", str(work)]  # the folders leading to the mounts: read-only
    inner += ["prlimit", f"--cpu={limits.cpu_seconds}", f"--as={limits.memory_bytes}"]
    inner += [f"--nproc={limits.processes}", f"--fsize={limits.file_bytes}", "--", *command]
    env = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in kernel_environment(python).items())]
    return [*env, *as_unprivileged([*view.shown, identity_files(), sockets]), *inner]


def as_unprivileged(sources: list[Path]) -> list[str]:
    """What runs before bwrap so that no kernel is root outside its namespace: nothing for an ordinary
    user; for root, ``setpriv`` to ``nobody``, after an outer bwrap that makes the folders the sandbox
    shows (``sources``) reachable for ``nobody`` where a private folder leads to them (a Python under
    ``/root``).

    A user namespace made by root would map the kernel to root outside it: root's files readable, and
    the process limit void (it does not apply to root).
    """
    if os.geteuid() != 0:
        return []
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    private = sorted({top for path in sources for top in _private_ancestors(path)}, key=lambda p: len(p.parts))
    private = [p for p in private if not any(q in p.parents for q in private)]  # the outermost ones
    if not private:
        return drop
    outer = [require_bwrap(), "--dev-bind", "/", "/", "--die-with-parent"]
    for top in private:
        outer += ["--perms", "0755", "--tmpfs", str(top)]
        below = [Path(path) for path in sources if top in Path(path).parents]
        for folder in _folders_below(top, *below):
            outer += ["--perms", "0755", "--dir", str(folder)]
        for path in below:
            outer += ["--bind", str(path), str(path)]
    return [*outer, *drop]


def kernel_argv(sockets: Path, limits: Limits, view: View, folder: str, python: Path | None = None) -> list[str]:
    """The kernelspec ``argv`` that starts ``python -m ipykernel`` in the sandbox (:func:`sandboxed`).

    A shell of the grader's first empties ``sockets`` (what a kernel left there cannot stop the next
    one from starting) and opens ``{connection_file}``, which jupyter_client fills in, as descriptor 3:
    bwrap copies it into the kernel's ``/tmp``, so the kernel's user needs no access to the grader's file.
    """
    python = Path(python or sys.executable)
    command = [str(python), "-m", "ipykernel_launcher", "-f", CONNECTION_FILE]
    argv = sandboxed(command, sockets, limits, view, folder, files={3: CONNECTION_FILE}, python=python)
    at = 2 + len(kernel_environment(python))  # after env -i VAR=VALUE...
    script = 'exec 3<"$0" && find "$1" -mindepth 1 -delete && shift && cd / && exec "$@"'  # no PWD of the grader's
    return [*argv[:at], "/bin/sh", "-c", script, "{connection_file}", str(sockets), *argv[at:]]


def prepare(base: Path, limits: Limits, view: View, folder: str) -> dict:
    """Write a sandboxed ``python3`` kernelspec under ``base``; return the env and nbgrader flags.

    Args:
        base: a folder of the grader's for this grading (the kernelspec goes in ``base/kernels``).
        limits: the resource limits.
        view: what the kernel sees (:meth:`View.of_this_python`).
        folder: the kernel's working folder's name (the assignment's).

    Returns:
        ``{"scratch": ..., "env": {...}, "args": [...]}``: a folder of this grading alone that the
        caller removes after the run (the kernel's sockets, the connection files), environment
        variables for the nbgrader process (``JUPYTER_PATH`` puts the sandboxed kernelspec first,
        ``JUPYTER_RUNTIME_DIR`` holds the connection files, :data:`VIEW_ENV`) and command-line flags
        that switch the kernel to the IPC transport (it has no network).
    """
    spec_dir = Path(base) / "kernels" / "python3"
    # Unix socket paths are limited to about 108 bytes: keep the sockets in a short folder.
    scratch = Path(tempfile.mkdtemp(prefix="course-ipc-"))
    sockets, runtime = scratch / "s", scratch / "r"
    sockets.mkdir()
    runtime.mkdir()
    if os.geteuid() == 0:
        os.chmod(scratch, 0o711)
        os.chown(sockets, NOBODY, NOBODY)  # the kernel, as nobody, creates its sockets there
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": kernel_argv(sockets, limits, view, folder),
        "display_name": "Python 3 (sandboxed grading)",
        "language": "python",
        # Interrupts as a control message: ipykernel then signals only itself. A SIGINT to the
        # process group would also reach bwrap, whose death takes the kernel with it.
        "interrupt_mode": "message",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return {
        "scratch": str(scratch),
        "env": {"JUPYTER_PATH": str(base), "JUPYTER_RUNTIME_DIR": str(runtime), VIEW_ENV: view.to_json()},
        "args": ["--KernelManager.transport=ipc", f"--KernelManager.ip={sockets / 'kernel'}"],
    }
