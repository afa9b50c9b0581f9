"""A student's JupyterLab: nbgrader's student tools only, configured for the course.

Run once in the students' environment (a conda env, a venv, the JupyterHub image)::

    python -m course_lib.lab_setup --kit                 # the student kit: Validate, no exchange
    python -m course_lib.lab_setup --hub --exchange /srv/nbgrader/exchange --course-id vae101

This module ships to students (``autograder`` does not): it is the one source of the students'
``nbgrader_config.py``, which ``course student-config`` prints too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Level = Literal["sys_prefix", "user"]

#: nbgrader's JupyterLab plugins (``@jupyter/nbgrader`` 0.9: ``package.json`` and its ``static/`` bundle).
FORMGRADER = "@jupyter/nbgrader:formgrader"
CREATE_ASSIGNMENT = "@jupyter/nbgrader:create-assignment"
ASSIGNMENT_LIST = "@jupyter/nbgrader:assignment-list"
COURSE_LIST = "@jupyter/nbgrader:course-list"
MENU = "@jupyter/nbgrader:menu"
VALIDATE = "@jupyter/nbgrader:validate-assignment"

#: The instructor's tools, off for every student.
INSTRUCTOR_PLUGINS: tuple[str, ...] = (FORMGRADER, CREATE_ASSIGNMENT)
INSTRUCTOR_SERVER_EXTENSIONS: tuple[str, ...] = ("nbgrader.server_extensions.formgrader",)
#: The Assignments panel (fetch, submit, fetch feedback) and what it needs: on with an exchange only.
EXCHANGE_PLUGINS: tuple[str, ...] = (ASSIGNMENT_LIST, COURSE_LIST, MENU)
EXCHANGE_SERVER_EXTENSIONS: tuple[str, ...] = (
    "nbgrader.server_extensions.assignment_list",
    "nbgrader.server_extensions.course_list",
)
#: Always on: the notebook toolbar's Validate button (its server extension also answers the
#: ``/nbgrader_version`` check the button makes first).
STUDENT_PLUGINS: tuple[str, ...] = (VALIDATE,)
STUDENT_SERVER_EXTENSIONS: tuple[str, ...] = ("nbgrader.server_extensions.validate_assignment",)


class LabSetupError(RuntimeError):
    """A switch could not be set, or a configuration of higher priority undoes it."""


@dataclass(frozen=True)
class Plan:
    """What a student's JupyterLab has on and off.

    Attributes:
        plugins_off: JupyterLab plugin ids to disable and lock.
        plugins_on: plugin ids that must stay (or become) enabled.
        server_off: Jupyter Server extension modules to disable.
        server_on: server extension modules to enable.
    """

    plugins_off: tuple[str, ...]
    plugins_on: tuple[str, ...]
    server_off: tuple[str, ...]
    server_on: tuple[str, ...]


def plan(hub: bool) -> Plan:
    """The switches of a hub student (``hub=True``: the Assignments panel) or of a kit student."""
    if hub:
        return Plan(
            INSTRUCTOR_PLUGINS,
            EXCHANGE_PLUGINS + STUDENT_PLUGINS,
            INSTRUCTOR_SERVER_EXTENSIONS,
            EXCHANGE_SERVER_EXTENSIONS + STUDENT_SERVER_EXTENSIONS,
        )
    return Plan(
        INSTRUCTOR_PLUGINS + EXCHANGE_PLUGINS,
        STUDENT_PLUGINS,
        INSTRUCTOR_SERVER_EXTENSIONS + EXCHANGE_SERVER_EXTENSIONS,
        STUDENT_SERVER_EXTENSIONS,
    )


#: Validate's limit per cell, in seconds: the grader's (``assignments/nbgrader_config.py``).
VALIDATE_CELL_TIMEOUT = 300


def student_config(exchange: str | Path | None = None, course_id: str | None = None, student: str | None = None) -> str:
    """The students' ``nbgrader_config.py``: Validate's time limit and, on a hub, the exchange and the
    course; nothing of the instructor's.

    Args:
        exchange: nbgrader's exchange root as the students' machine sees it (made absolute);
            ``None`` for the student kit (no exchange).
        course_id: the course id the instructor released to (with ``exchange``).
        student: a fixed student id for *Submit* and *Fetch Feedback*
            (``CourseDirectory.student_id``); by default nbgrader takes ``JUPYTERHUB_USER`` or the
            login name, which is right on JupyterHub.

    Raises:
        ValueError: for an exchange without a course id (or the reverse), an empty course id, or a
            student id that is empty or holds ``*`` or ``+`` (nbgrader refuses those).
    """
    if (exchange is None) != (course_id is None):
        raise ValueError("give both the exchange and the course id, or neither (the student kit)")
    if course_id is not None and not course_id.strip():
        raise ValueError("the course id is empty")
    if student is not None and exchange is None:
        raise ValueError("a student id needs an exchange")
    text = (
        "# nbgrader for students of this course"
        + (": where assignments come from and go to.\n" if exchange is not None else " (no exchange).\n")
        + "c = get_config()  # noqa: F821\n"
        + f"c.Execute.timeout = {VALIDATE_CELL_TIMEOUT}  # seconds per cell when validating\n"
    )
    if exchange is not None:
        text += f"c.Exchange.root = {str(Path(exchange).resolve())!r}\nc.CourseDirectory.course_id = {course_id!r}\n"
    if student is not None:
        if not student.strip() or "*" in student or "+" in student:
            raise ValueError(f"a student id must be non-empty and hold no '*' or '+', got {student!r}")
        text += f"c.CourseDirectory.student_id = {student!r}\n"
    return text


def config_dir(level: Level) -> Path:
    """The Jupyter configuration folder of ``level``: ``<sys.prefix>/etc/jupyter`` or the user's.

    Raises:
        ValueError: for another level.
    """
    from jupyter_core.paths import ENV_CONFIG_PATH, jupyter_config_dir

    if level == "sys_prefix":
        return Path(ENV_CONFIG_PATH[0])
    if level == "user":
        return Path(jupyter_config_dir())
    raise ValueError(f"level must be 'sys_prefix' or 'user', got {level!r}")


def _page_config(level: str) -> dict:
    from jupyterlab_server.config import get_static_page_config

    return get_static_page_config(level=level)


def disabled_plugins() -> set[str]:
    """The JupyterLab plugins disabled, over every configuration folder as JupyterLab merges them."""
    disabled = _page_config("all").get("disabledExtensions", {})
    if isinstance(disabled, list):  # JupyterLab 3's format
        return set(disabled)
    return {name for name, off in disabled.items() if off}


def server_extensions() -> dict[str, bool]:
    """``module -> enabled`` of the Jupyter Server extensions, merged as Jupyter Server merges them."""
    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.extension.config import ExtensionConfigManager

    return dict(ExtensionConfigManager(read_config_path=jupyter_config_path()).get_jpserver_extensions())


def _set_plugins(plan_: Plan, level: Level) -> None:
    """Disable the plugins of ``plan_.plugins_off`` and enable those of ``plan_.plugins_on``, locking
    both, in ``<config dir>/labconfig/page_config.json`` of ``level``.

    This is the file and the format ``jupyter labextension disable|enable|lock --level=LEVEL``
    writes, through the same functions (``jupyterlab_server.config``), without the command's
    start-up (a node.js call, seconds each). An enabled plugin is written as ``false`` (it undoes a
    kit set-up, and a lower level's disabling); a locked one cannot be switched from the lab's
    Plugin Manager.
    """
    from jupyterlab_server.config import write_page_config

    page_config = _page_config(level)
    disabled = page_config.get("disabledExtensions", {})
    if isinstance(disabled, list):  # JupyterLab 3's format
        disabled = dict.fromkeys(disabled, True)
    locked = page_config.get("lockedExtensions", {})
    for names, off in ((plan_.plugins_off, True), (plan_.plugins_on, False)):
        for name in names:
            disabled[name] = off
            locked[name] = True
    page_config["disabledExtensions"], page_config["lockedExtensions"] = disabled, locked
    write_page_config(page_config, level=level)


def _set_server_extensions(plan_: Plan, level: Level) -> None:
    """What ``jupyter server extension disable/enable --sys-prefix|--user`` writes
    (``<config dir>/jupyter_server_config.d/<module>.json``).

    The command itself refuses a module that is not declared at the same level ("could not be
    found", exit status 0): nbgrader declares its extensions at the environment's level only, so
    ``--user`` would silently do nothing. Its function does the same write without that check.
    """
    from jupyter_server.extension.serverextension import toggle_server_extension_python

    for enabled, names in ((False, plan_.server_off), (True, plan_.server_on)):
        for name in names:
            toggle_server_extension_python(
                name, enabled=enabled, user=level == "user", sys_prefix=level == "sys_prefix"
            )


def check(plan_: Plan) -> None:
    """Read the effective settings back and compare them with ``plan_``.

    Raises:
        LabSetupError: naming each plugin or server extension in the wrong state, and where to look.
    """
    from jupyter_core.paths import jupyter_config_path

    off, server = disabled_plugins(), server_extensions()
    wrong = [f"plugin {n} is still enabled" for n in plan_.plugins_off if n not in off]
    wrong += [f"plugin {n} is disabled" for n in plan_.plugins_on if n in off]
    wrong += [f"server extension {n} is still enabled" for n in plan_.server_off if server.get(n, False)]
    wrong += [f"server extension {n} is disabled" for n in plan_.server_on if not server.get(n, False)]
    if wrong:
        paths = ", ".join(jupyter_config_path())
        raise LabSetupError(
            "after the set-up, " + "; ".join(wrong) + ". A configuration folder of higher priority "
            f"overrides it (in order: {paths}); run the set-up at that level (--sys-prefix or --user), "
            "or set JUPYTER_PREFER_ENV_PATH=0 so that the user's folder comes first."
        )


def setup(
    hub: bool,
    exchange: str | Path | None = None,
    course_id: str | None = None,
    student: str | None = None,
    level: Level = "sys_prefix",
) -> Path:
    """Configure this environment's JupyterLab for a student.

    nbgrader's instructor tools are switched off as nbgrader's "Installation" page says (``jupyter
    labextension disable``, ``jupyter server extension disable``): the plugins *Formgrader*, *Manage
    Assignments* and *Create Assignment*, locked (JupyterLab >= 4.1 lets users switch an unlocked plugin back
    on in its Plugin Manager), and the formgrader's server extension; *Validate* stays on. The kit also
    switches the Assignments panel off (without an exchange it would only say "Error fetching courses!").
    ``nbgrader_config.py`` gets Validate's limit per cell (:data:`VALIDATE_CELL_TIMEOUT`: nbgrader's default,
    30 s, cuts a training cell short on a slow laptop or a busy hub).

    Everything is written to ``level``'s configuration folder (:func:`config_dir`), then read back merged
    over every folder as JupyterLab and Jupyter Server merge them (:func:`check`): a folder of higher priority
    that undoes a switch is an error here, not a surprise in class. (In a virtual environment its owner runs,
    Jupyter ranks the environment's folder above the user's, see ``JUPYTER_PREFER_ENV_PATH``, so ``"user"``
    cannot override it there.) To give an environment its instructor tools back: ``jupyter labextension
    unlock`` and ``enable`` the plugins, ``jupyter server extension enable`` the module.

    Args:
        hub: ``True`` for an exchange (the Assignments panel), ``False`` for the student kit.
        exchange: nbgrader's exchange root (hub only).
        course_id: the course id (hub only).
        student: a fixed student id (hub only; see :func:`student_config`).
        level: ``"sys_prefix"`` (this environment) or ``"user"``.

    Returns:
        The configuration folder written.

    Raises:
        ValueError: for a hub set-up without exchange or course id, or a kit set-up with them.
        LabSetupError: if a switch fails or is overridden (:func:`check`).
    """
    if hub and (exchange is None or course_id is None):
        raise ValueError("a hub set-up needs the exchange folder and the course id")
    if not hub and (exchange is not None or course_id is not None or student is not None):
        raise ValueError("the kit set-up takes no exchange, course id or student (use the hub set-up)")
    folder = config_dir(level)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nbgrader_config.py").write_text(student_config(exchange, course_id, student))
    plan_ = plan(hub)
    _set_plugins(plan_, level)
    _set_server_extensions(plan_, level)
    check(plan_)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m course_lib.lab_setup (--kit | --hub --exchange DIR --course-id ID) [--user]``."""
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.lab_setup",
        description="Set up JupyterLab for a student of the course: nbgrader's student tools only.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--kit", action="store_true", help="the student kit: Validate only, no Assignments panel")
    mode.add_argument("--hub", action="store_true", help="an nbgrader exchange: the Assignments panel and Validate")
    parser.add_argument("--exchange", help="nbgrader's exchange root (with --hub)")
    parser.add_argument("--course-id", help="the course id of the exchange (with --hub)")
    parser.add_argument("--student", help="a fixed student id (with --hub; default: JUPYTERHUB_USER or the login)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--sys-prefix", dest="level", action="store_const", const="sys_prefix", default="sys_prefix")
    where.add_argument("--user", dest="level", action="store_const", const="user", help="the user's configuration")
    args = parser.parse_args(argv)
    if args.hub and (args.exchange is None or args.course_id is None):
        parser.error("--hub needs --exchange and --course-id")
    if args.kit and (args.exchange or args.course_id or args.student):
        parser.error("--kit takes no --exchange, --course-id or --student")
    try:
        if args.hub:
            folder = setup(True, args.exchange, args.course_id, args.student, level=args.level)
        else:
            folder = setup(False, level=args.level)
    except (LabSetupError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    plan_ = plan(args.hub)
    print(f"JupyterLab set up for a student ({'hub' if args.hub else 'kit'}) in {folder}")
    print(f"  off: {', '.join(plan_.plugins_off + plan_.server_off)}")
    print(f"  on:  {', '.join(plan_.plugins_on + plan_.server_on)}")
    exchange = f"exchange {Path(args.exchange).resolve()}, course {args.course_id}" if args.hub else "no exchange"
    print(f"  nbgrader_config.py: Validate's limit {VALIDATE_CELL_TIMEOUT} s per cell, {exchange}")
    if args.hub and not Path(args.exchange).is_dir():
        print(f"  note: the exchange {args.exchange} does not exist yet; the Assignments panel needs it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
