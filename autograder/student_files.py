"""Reading what a student handed in: regular files only, never through a link, never more than a cap.

The grader reads with its own rights, so a submission must not make it read for the student what the
student could not (a symbolic link to a classmate's notebook or to the course's solutions, a hard
link to another owner's file) or hang or flood it (a FIFO, a device, a 250 MB notebook). Every read
of a student's files goes through :func:`read_regular` or :func:`copy_tree`: staging a submission,
nbgrader's collect from the exchange (:class:`autograder.exchange.SafeCollect`), an LMS zip.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

#: The file :func:`copy_tree` writes next to what it copied: each path it refused and why. A file of
#: this name in a submission is refused itself (it would pose as the grader's list).
REFUSED = ".course-refused.json"


class RefusedFileError(OSError):
    """A student's file that the grader does not read (the message says what it is)."""


def _kind(mode: int) -> str | None:
    """What a non-regular file is, for the message; ``None`` for a regular file."""
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def _refusal(st: os.stat_result, owner: int | None, limit: int | None) -> str | None:
    """Why a file with this status (from lstat or fstat) is refused, or ``None``."""
    kind = _kind(st.st_mode)
    if kind is not None:
        return f"is {kind}"
    if owner is not None and st.st_nlink > 1 and st.st_uid != owner:
        return "is a hard link to a file of another owner"
    if limit is not None and st.st_size > limit:
        return f"is {st.st_size / 1e6:.1f} MB, over the {limit / 1e6:.0f} MB limit"
    return None


def refusal(path: Path, owner: int | None = None, limit: int | None = None) -> str | None:
    """Why the grader would not read ``path`` (looked at with ``lstat``, never followed), or ``None``.

    Args:
        path: a file of a submission.
        owner: the uid owning the submission; a hard link whose file another uid owns is refused.
        limit: the largest size read, bytes.
    """
    try:
        return _refusal(os.lstat(path), owner, limit)
    except OSError as err:
        return f"cannot be read ({err.strerror})"


def real_folder(path: Path) -> bool:
    """Whether ``path`` is a folder itself (``lstat``), not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def read_regular(path: Path, owner: int | None = None, limit: int | None = None) -> bytes:
    """The bytes of ``path`` if it is a regular file (not followed if a link), of ``owner`` when a hard
    link, at most ``limit`` bytes.

    The file is looked at before it is opened, opened without following a link and without blocking,
    and checked again on the open descriptor, so nothing can swap it between the check and the read.

    Raises:
        RefusedFileError: saying what the file is (a symbolic link, a FIFO, too large...).
    """
    why = refusal(path, owner, limit)  # nothing but a regular file is even opened
    if why is not None:
        raise RefusedFileError(f"{Path(path).name} {why}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as err:
        why = refusal(path, owner, limit) or f"cannot be read ({err.strerror})"
        raise RefusedFileError(f"{Path(path).name} {why}") from None
    with os.fdopen(fd, "rb") as handle:
        why = _refusal(os.fstat(fd), owner, limit)
        if why is not None:
            raise RefusedFileError(f"{Path(path).name} {why}")
        data = handle.read(limit + 1 if limit is not None else -1)
    if limit is not None and len(data) > limit:  # it grew while read
        raise RefusedFileError(f"{Path(path).name} is over the {limit / 1e6:.0f} MB limit")
    return data


def copy_tree(
    src: Path,
    dest: Path,
    owner: int | None = None,
    limit: int | None = None,
    ignore: Callable[[str, list[str]], list[str]] | None = None,
) -> dict[str, str]:
    """Copy the regular files and folders of ``src`` into ``dest`` as content, refusing everything else.

    Symbolic links (to files or folders), hard links of another owner, devices, FIFOs, sockets and files
    over ``limit`` are not opened; ``dest/REFUSED`` lists them (relative path -> why), and so does the
    return value. ``ignore`` is a ``shutil.copytree`` ignore function (nbgrader's ignore and include
    patterns).
    """
    src, dest = Path(src), Path(dest)
    refused: dict[str, str] = {}
    dest.mkdir(parents=True, exist_ok=True)
    stack = [Path(".")]
    while stack:
        relative = stack.pop()
        folder = src / relative
        names = sorted(os.listdir(folder))
        skipped = set(ignore(str(folder), names)) if ignore else set()
        for name in names:
            path, where = folder / name, relative / name
            if name in skipped:
                continue
            if name == REFUSED:
                refused[str(where)] = "has the name of the grader's own list of refused files"
                continue
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                (dest / where).mkdir(exist_ok=True)
                stack.append(where)
                continue
            try:
                (dest / where).write_bytes(read_regular(path, owner, limit))
            except RefusedFileError as err:
                refused[str(where)] = str(err).removeprefix(f"{name} ")
    if refused:
        (dest / REFUSED).write_text(json.dumps(refused, indent=1))
    return refused


def refused_in(folder: Path) -> dict[str, str]:
    """The files :func:`copy_tree` refused when it copied into ``folder`` (relative path -> why)."""
    path = Path(folder) / REFUSED
    return json.loads(path.read_text()) if path.is_file() and not path.is_symlink() else {}
