"""Run each grading kernel in a sandbox: no network, bounded resources, read-only files.

nbgrader runs hidden tests in the same kernel as the student's code and has no sandbox of its
own. Here nbgrader itself runs as usual (it owns the gradebook), but the kernel that executes a
submission is started through a kernelspec whose command is:

    bwrap (bubblewrap)      new mount, PID, IPC and network namespaces; the whole filesystem
                            read-only; a private writable working folder and /tmp; no network
    prlimit                 CPU seconds, address space (memory), processes, file size
    setpriv                 drop from root to an unprivileged user (``nobody`` or one below it,
                            leased by :func:`sandbox_user` for this kernel alone), so that the
                            process limit holds (root is exempt from it)
    python -m ipykernel     the kernel, talking to nbgrader over Unix sockets (IPC transport),
                            since TCP would need the network namespace it does not have

So student code can read what any user can read, except what would hand it answers: the course
folder (source notebooks with the solutions, the other students' submissions, the gradebook), the
repository around the installed packages, and ``course_lib/solutions`` all look empty. It cannot
write anywhere but its own folder and /tmp, cannot open a connection, and cannot fork, allocate or
run without bound. The working folder is a fresh tmpfs: files a notebook writes (generated
images) live there for the run and are checked by the hidden tests in the same kernel.

Requires bubblewrap (Debian: ``apt-get install bubblewrap``; ``make sandbox`` installs it).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
#: Users a sandboxed kernel may run as: nobody and the 255 numbers below it (no account has them on
#: Debian, where 60000-64999 are the dynamic range). One per kernel running at a time on a machine.
SANDBOX_UIDS = range(NOBODY, NOBODY - 256, -1)
#: Where the leases of :data:`SANDBOX_UIDS` are kept: lock files, one per user, machine-wide.
LEASES = Path("/run/lock") if os.access("/run/lock", os.W_OK) else Path(tempfile.gettempdir())
#: Environment variable naming the folders the sandbox hides (``os.pathsep``-separated), set for
#: nbgrader's process so that it can tell a file the sandbox refused from one a notebook failed to write.
HIDDEN_ENV = "COURSE_HIDDEN"


class SandboxUnavailableError(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one grading kernel.

    Attributes:
        cpu_seconds: CPU time of the kernel process (RLIMIT_CPU), seconds.
        memory_bytes: address space of the kernel (RLIMIT_AS), bytes; a larger allocation
            raises MemoryError in the student's code.
        processes: processes and threads of the sandbox user (RLIMIT_NPROC); stops fork bombs.
        file_bytes: largest file the kernel may write (RLIMIT_FSIZE), bytes.
        tmp_bytes: size of the private /tmp and working folder (tmpfs), bytes.
    """

    cpu_seconds: int = 900
    memory_bytes: int = 6 * 2**30
    processes: int = 256
    file_bytes: int = 256 * 2**20
    tmp_bytes: int = 512 * 2**20


@contextmanager
def sandbox_user(leases: Path = LEASES) -> Iterator[int]:
    """A user of :data:`SANDBOX_UIDS` that no other sandboxed kernel on this machine runs as while
    the ``with`` block lasts.

    The process limit (``RLIMIT_NPROC``) counts every process and thread of a user on the machine,
    so two kernels run as one user share it: a fork bomb in one student's notebook would stop
    another's kernel, graded at the same time by another worker, another ``course autograde`` or
    ``course watch``, from starting a thread. Each grading holds an exclusive ``flock`` on
    ``<leases>/course-sandbox-<uid>.lock``; the operating system drops it when the holder ends,
    however it ends (a killed grader leaks no user).

    Raises:
        SandboxUnavailableError: if all 256 users are leased (256 kernels are grading on this machine).
    """
    leases.mkdir(parents=True, exist_ok=True)
    for uid in SANDBOX_UIDS:
        fd = os.open(leases / f"course-sandbox-{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield uid
        finally:
            os.close(fd)  # releases the lock
        return
    raise SandboxUnavailableError(
        f"all {len(SANDBOX_UIDS)} sandbox users ({SANDBOX_UIDS[-1]}-{SANDBOX_UIDS[0]}) are grading already "
        f"(leases in {leases}); use fewer workers on this machine"
    )


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


def _hidden_ancestors(path: Path) -> list[Path]:
    """Ancestors of ``path`` that ``nobody`` cannot traverse (e.g. /root holding pyenv)."""
    out = []
    for parent in reversed(path.parents):
        try:
            mode = parent.stat().st_mode
        except OSError:
            continue
        if not mode & stat.S_IXOTH:
            out.append(parent)
    return out


def _folders_below(top: Path, *paths: Path) -> list[Path]:
    """The ancestors of ``paths`` strictly below ``top``, parents first, without repeats.

    bwrap creates missing mount points with mode 0700; these are the folders to create first
    with a mode that lets the unprivileged user through.
    """
    out: list[Path] = []
    for path in paths:
        for parent in reversed(Path(path).resolve().parents):
            if top in parent.parents and parent not in out:
                out.append(parent)
    return out


def kernel_argv(
    workdir: Path,
    ipc_dir: Path,
    limits: Limits,
    uid: int,
    course_root: Path | None = None,
    readonly: tuple[Path, ...] = (),
    hidden: tuple[Path, ...] = (),
) -> list[str]:
    """The kernelspec ``argv`` that starts ``python -m ipykernel`` in the sandbox.

    ``course_root`` (default: three levels above ``workdir``, ``<root>/autograded/<id>/<a>``) is
    hidden: it holds the source notebooks (solutions), the other students' submissions and the
    gradebook. ``workdir`` becomes a private tmpfs inside it; ``ipc_dir`` holds the sockets;
    ``readonly`` lists more folders the kernel needs (the packages of an editable install), shown
    read-only even inside a hidden folder; ``hidden`` lists folders shown empty (the reference
    answers), also when they lie inside a ``readonly`` one.
    """
    course_root = Path(course_root or Path(workdir).parents[2]).resolve()
    bwrap = require_bwrap()
    python = Path(sys.executable)
    tmp = Path("/tmp")
    # What the kernel must see, wherever it lives: the interpreter, the environment, the code.
    needed = sorted(
        {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), *(Path(p).resolve() for p in readonly)}
    )
    # What it must not see: shown as empty folders. A mask inside a needed folder goes on after
    # that folder is bound back; the others before, parents first.
    masks = sorted({course_root, *(Path(h).resolve() for h in hidden if Path(h).exists())}, key=lambda m: len(m.parts))
    inner = [m for m in masks if any(n in m.parents for n in needed)]
    outer = [m for m in masks if m not in inner]
    # Every folder that something is mounted on later, so that the folders leading to it can be
    # made first with mode 0755 (bwrap creates missing mount points with mode 0700, which the
    # unprivileged user cannot pass).
    targets = [*needed, *(m / "x" for m in masks), ipc_dir, workdir]
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    # Private folders on the way (pyenv under /root) become empty, traversable tmpfs; so does /tmp.
    private = sorted({h for path in needed for h in _hidden_ancestors(path)})
    for top in private:
        argv += ["--perms", "0755", "--tmpfs", str(top)]
    size = str(limits.tmp_bytes)
    argv += ["--size", size, "--perms", "1777", "--tmpfs", str(tmp)]
    # The connection file nbclient wrote (often under the host's /tmp, hidden above).
    argv += ["--ro-bind", "{connection_file}", "/tmp/.host-connection.json"]
    for top in [*private, tmp]:
        for folder in _folders_below(top, *targets):
            argv += ["--perms", "0755", "--dir", str(folder)]
    for mask in outer:
        argv += ["--perms", "0755", "--tmpfs", str(mask)]
        for folder in _folders_below(mask, *targets):
            argv += ["--perms", "0755", "--dir", str(folder)]
    covered = [*private, tmp, *outer]
    for path in needed:
        if any(top == path or top in path.parents for top in covered):
            argv += ["--ro-bind", str(path), str(path)]
    for mask in inner:
        argv += ["--perms", "0755", "--tmpfs", str(mask)]
    argv += ["--bind", str(ipc_dir), str(ipc_dir)]
    argv += ["--size", size, "--perms", "1777", "--tmpfs", str(workdir), "--chdir", str(workdir)]
    argv += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"]
    # In the new PID namespace the kernel's parent is PID 1, which ipykernel's parent poller reads
    # as "the parent exited"; bwrap's --die-with-parent ties the kernel's life to nbgrader instead.
    argv += ["--unsetenv", "JPY_PARENT_PID"]
    argv += ["--setenv", "HOME", "/tmp", "--setenv", "MPLCONFIGDIR", "/tmp", "--setenv", "PYTHONDONTWRITEBYTECODE", "1"]
    # As root inside the sandbox: copy the connection file (mode 600, root's) where the kernel
    # can read it, then apply the limits and become `nobody`.
    script = (
        f"install -o {uid} -g {uid} -m 600 /tmp/.host-connection.json /tmp/.kernel-connection.json && "
        f"exec prlimit --cpu={limits.cpu_seconds} --as={limits.memory_bytes} --nproc={limits.processes} "
        f"--fsize={limits.file_bytes} -- setpriv --reuid={uid} --regid={uid} --clear-groups -- "
        '"$1" -m ipykernel_launcher -f /tmp/.kernel-connection.json'
    )
    return [*argv, "sh", "-c", script, "sandboxed-kernel", str(python)]


def prepare(
    base: Path,
    workdir: Path,
    limits: Limits,
    uid: int,
    readonly: tuple[Path, ...] = (),
    hidden: tuple[Path, ...] = (),
) -> dict[str, str]:
    """Write a sandboxed ``python3`` kernelspec under ``base``; return the env and nbgrader flags.

    ``uid`` is the unprivileged user the kernel runs as (leased with :func:`sandbox_user`); ``readonly``
    and ``hidden`` are passed to :func:`kernel_argv`.

    Returns:
        ``{"env": {...}, "args": [...]}``: environment variables for the nbgrader process
        (``JUPYTER_PATH`` puts the sandboxed kernelspec first, ``JUPYTER_RUNTIME_DIR`` holds the
        connection files) and command-line flags that switch the kernel to the IPC transport.
    """
    base = Path(base)
    spec_dir = base / "kernels" / "python3"
    # Unix socket paths are limited to about 108 bytes: keep the sockets in a short folder
    # (the caller removes it after the run).
    ipc_dir = Path(tempfile.mkdtemp(prefix="course-ipc-"))
    spec_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ipc_dir, 0o1777)  # the kernel (as nobody) creates its sockets here
    spec = {
        "argv": kernel_argv(Path(workdir), ipc_dir, limits, uid, readonly=readonly, hidden=hidden),
        "display_name": "Python 3 (sandboxed grading)",
        "language": "python",
        # Interrupts as a control message: ipykernel then signals only itself. A SIGINT to the
        # process group would also reach bwrap, whose death takes the kernel with it.
        "interrupt_mode": "message",
        "env": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return {
        "ipc_dir": str(ipc_dir),
        "env": {"JUPYTER_PATH": str(base), "JUPYTER_RUNTIME_DIR": str(ipc_dir)},
        "args": ["--KernelManager.transport=ipc", f"--KernelManager.ip={ipc_dir / 'kernel'}"],
    }
