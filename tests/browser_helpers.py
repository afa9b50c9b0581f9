"""A student's JupyterLab in a real browser: their home, their server, Debian's chromium, screenshots.

:class:`StudentHome` is a student's home folder with their own Jupyter configuration
(``JUPYTER_CONFIG_DIR`` and ``JUPYTER_DATA_DIR`` inside it), set up with ``python -m
course_lib.lab_setup ... --user``. :class:`LabServer` runs ``jupyter lab`` for that student on a free
port. :func:`launch_chromium` starts Debian's ``/usr/bin/chromium`` through the Python ``playwright``
package (no browser is downloaded). :class:`Steps` names each step of a scenario, screenshots it,
and turns a failure into a message that says which step failed, what the page showed and what the
server logged.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: JupyterLab's question which kernel to start (a locator's selector).
SELECT_KERNEL = ".jp-Dialog:has-text('Select Kernel')"
#: Generous: the machine running the suite has two cores and runs other work beside the browser.
TIMEOUT_MS = 120_000


_RELEASES: dict[str, dict[str, Path]] = {}


def release_once(tmp_path_factory: Any, assignment: str) -> dict[str, Path]:
    """``autograder.release.release(assignment)`` once per pytest session (the kit and browser tests
    share it): the paths of the ``release`` folder, the ``kit`` zip, the ``wheel`` and the course ``root``.

    Treat the folders as read-only.
    """
    from autograder import release

    if assignment not in _RELEASES:
        _RELEASES[assignment] = release.release(assignment, tmp_path_factory.mktemp(f"release_{assignment}"))
    return _RELEASES[assignment]


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class StudentHome:
    """A student's home folder with a Jupyter configuration of its own.

    The environment puts the user's configuration first (``JUPYTER_PREFER_ENV_PATH=0``, as for a
    JupyterHub user, who does not own the image's environment), so that ``lab_setup --user`` here
    never touches the shared development environment.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = self.path / ".jupyter"
        self.env = {
            **os.environ,
            "HOME": str(self.path),
            "JUPYTER_CONFIG_DIR": str(self.config),
            "JUPYTER_DATA_DIR": str(self.path / ".local" / "share" / "jupyter"),
            "JUPYTER_RUNTIME_DIR": str(self.path / ".local" / "share" / "jupyter" / "runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "JUPYTER_PREFER_ENV_PATH": "0",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "SDL_VIDEODRIVER": "dummy",
            "SDL_AUDIODRIVER": "dummy",
            # one thread per kernel: two spinning OpenMP threads on a shared 2-core machine are many
            # times slower than one (tests/conftest.py)
            "OMP_NUM_THREADS": "1",
            "TQDM_DISABLE": "1",
        }
        for leak in ("COURSE_QUICK", "NBGRADER_EXECUTION", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH"):
            self.env.pop(leak, None)
        # The lab without what a test cannot wait for: no news feed or update check toasts, every
        # cell in the DOM (no windowing), so that the n-th cell of a notebook is its n-th .jp-Cell.
        settings = self.config / "lab" / "user-settings" / "@jupyterlab"
        for plugin, values in {
            "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
            "notebook-extension/tracker": {"windowingMode": "none"},
        }.items():
            file = settings / f"{plugin}.jupyterlab-settings"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(json.dumps(values))

    def lab_setup(self, *args: str) -> str:
        """``python -m course_lib.lab_setup ARGS --user`` as this student; its output.

        Raises:
            AssertionError: if it fails (with its output).
        """
        cmd = [sys.executable, "-m", "course_lib.lab_setup", *args, "--user"]
        result = subprocess.run(cmd, cwd=self.path, env=self.env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout


class LabServer:
    """``jupyter lab`` for one student, on a free port with a random token; a context manager.

    Attributes:
        url: the server's base URL.
        log: the server's log file (stdout and stderr).
    """

    def __init__(self, home: StudentHome, name: str):
        self.home, self.name = home, name
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.path.parent / f"{name}-jupyterlab.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> LabServer:
        """Start the server and wait until its REST API answers.

        Raises:
            AssertionError: if it exits or does not answer in ``timeout`` seconds (with its log).
        """
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.home.path}",
            "--LabApp.news_url=None",
            # window.jupyterapp: the tests read the registered commands, the plugins' traces
            "--LabApp.expose_app_in_browser=True",
        ]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=self.home.path, env=self.home.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"jupyter lab ({self.name}) exited with {self.proc.returncode}:\n{tail(self.log)}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise AssertionError(f"jupyter lab ({self.name}) did not answer in {timeout:.0f} s:\n{tail(self.log)}")

    def lab_url(self, path: str = "lab") -> str:
        """The URL of ``path`` (``lab``, ``lab/tree/<file>``, ``files/<file>``) with the token."""
        return f"{self.url}/{path}?token={self.token}"

    def get(self, path: str) -> int:
        """The HTTP status of ``GET path`` on the server (with the token)."""
        try:
            with urllib.request.urlopen(f"{self.url}/{path}?token={self.token}", timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code

    def stop(self) -> None:
        """Stop the server and its kernels (the whole process group)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def launch_chromium(playwright: Any) -> Any:
    """Debian's chromium, headless, with a fresh profile (playwright makes a temporary one).

    Raises:
        AssertionError: if ``/usr/bin/chromium`` is missing (``make browser`` installs it).
    """
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `make browser` (apt-get install chromium) installs it"
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


class Steps:
    """The steps of one browser scenario: each one named, screenshotted, and explained when it fails.

    Screenshots go to ``folder`` as ``<prefix>_NN_<name>.png`` and, when ``$COURSE_ARTIFACTS`` is set, to
    ``$COURSE_ARTIFACTS/browser/`` too. :attr:`taken` lists ``(path, what it shows)``.
    """

    def __init__(self, page: Any, folder: Path, servers: list[LabServer], prefix: str):
        self.page, self.folder, self.servers, self.prefix = page, Path(folder), servers, prefix
        self.folder.mkdir(parents=True, exist_ok=True)
        self.taken: list[tuple[Path, str]] = []
        self.seconds: dict[str, float] = {}
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda err: self.console.append(f"page error: {err}"))

    def shot(self, name: str, what: str) -> Path:
        """Screenshot the page as ``<prefix>_NN_<name>.png``; ``what`` says what it should show."""
        path = self.folder / f"{self.prefix}_{len(self.taken) + 1:02d}_{name}.png"
        self.page.screenshot(path=str(path))
        self.taken.append((path, what))
        if os.environ.get("COURSE_ARTIFACTS"):
            dest = Path(os.environ["COURSE_ARTIFACTS"]) / "browser"
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dest / path.name)
        return path

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run a step (timed in :attr:`seconds`); on failure, screenshot the page and raise an error
        saying what it showed."""
        start = time.monotonic()
        try:
            yield
            self.seconds[name] = time.monotonic() - start
        except Exception as err:
            try:
                path = self.shot(f"FAILED_{name.replace(' ', '_')[:40]}", f"the page when '{name}' failed")
            except Exception as shot_err:  # the page itself may be gone
                path = f"(no screenshot: {shot_err})"
            dialogs = ""
            with contextlib.suppress(Exception):
                dialogs = " | ".join(self.page.locator(".jp-Dialog").all_inner_texts())[:1500]
            logs = "\n".join(f"--- {s.name} server log:\n{tail(s.log, 25)}" for s in self.servers)
            console = "\n".join(self.console[-10:])
            raise AssertionError(
                f"browser step '{name}' failed: {type(err).__name__}: {err}\n"
                f"screenshot: {path}\ndialogs: {dialogs or 'none'}\n"
                f"browser console errors:\n{console or 'none'}\n{logs}"
            ) from err


def answers(source: Path) -> dict[str, str]:
    """``grade_id -> the reference answer`` of every answer cell (code or written) of a source notebook.

    Code answers are the source cell without its ``### BEGIN/END SOLUTION`` lines: what a student
    who found the solution types. Written answers are the source's text.
    """
    found = {}
    for cell in nbformat.read(source, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("solution"):
            continue
        lines = [
            line for line in cell.source.splitlines() if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
        ]
        found[meta["grade_id"]] = "\n".join(lines)
    return found


def cell_index(notebook: Path) -> dict[str, int]:
    """``grade_id -> position`` of the nbgrader cells of a notebook file."""
    cells = nbformat.read(notebook, as_version=4).cells
    return {c.metadata["nbgrader"]["grade_id"]: i for i, c in enumerate(cells) if "nbgrader" in c.metadata}


def open_lab(page: Any, server: LabServer, path: str = "lab") -> None:
    """Load JupyterLab and wait until its shell and file browser are there."""
    page.goto(server.lab_url(path), timeout=TIMEOUT_MS)
    page.locator("#jp-main-dock-panel").wait_for(timeout=TIMEOUT_MS)
    page.locator(".jp-DirListing-content").first.wait_for(timeout=TIMEOUT_MS)


def notebook_panel(page: Any, name: str) -> Any:
    """The panel of the open notebook ``name`` (its file name), once it is the current tab and
    :func:`wait_for_kernel` has seen its kernel attached.

    The panel is located by its own id, not as "the visible notebook": while the lab restores its
    workspace, the visible notebook is for a moment another one.

    Raises:
        playwright's ``TimeoutError``: if that does not happen in ``TIMEOUT_MS``.
    """
    tab_name = re.compile(rf"^{re.escape(name)}$")
    tab = page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current", has_text=tab_name)
    tab.wait_for(timeout=TIMEOUT_MS)
    panel = page.locator(f"[id='{tab.get_attribute('data-id')}']")
    wait_for_kernel(page, panel)
    return panel


def wait_for_kernel(page: Any, notebook: Any) -> None:
    """Wait until ``notebook`` (a notebook panel) shows a kernel's name in its toolbar and the idle circle.

    That is what the student waits for; the circle alone is not enough: a notebook still attaching
    its kernel shows "No Kernel" beside an idle circle, and a run then asks which kernel to start.

    Raises:
        playwright's ``TimeoutError``: if that does not happen in ``TIMEOUT_MS``.
    """
    page.wait_for_function(
        """(id) => {
            const panel = document.getElementById(id);
            const kernel = panel?.querySelector('.jp-Toolbar-kernelName')?.innerText.trim();
            const status = panel?.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status;
            return !!kernel && kernel !== 'No Kernel' && status === 'idle';
        }""",
        arg=notebook.get_attribute("id"),
        timeout=TIMEOUT_MS,
    )


def accept_select_kernel(page: Any, quiet_s: float = 3.0) -> int:
    """Answer each "Select Kernel" dialog with the kernel it proposes (Select), as a student would, until
    none has come for ``quiet_s`` seconds; the number answered.

    JupyterLab asks once per code cell that a run reached while the notebook had no kernel, and shows
    the dialogs one after another, so one answer is not enough.

    Raises:
        AssertionError: if dialogs still come after ``TIMEOUT_MS``.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    dialog = page.locator(SELECT_KERNEL)
    answered, deadline = 0, time.monotonic() + TIMEOUT_MS / 1000
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_s:
        if dialog.count():
            if time.monotonic() > deadline:
                raise AssertionError(f"'Select Kernel' still asked after {answered} answers")
            with contextlib.suppress(PlaywrightTimeoutError):  # the dialog closed meanwhile
                dialog.first.locator(".jp-Dialog-button.jp-mod-accept").click(timeout=5_000)
                answered += 1
            quiet_since = time.monotonic()
        time.sleep(0.2)
    return answered


def run_all_cells(page: Any, notebook: Any, tries: int = 3) -> None:
    """Run > Run All Cells in ``notebook`` (a :func:`notebook_panel`) as a student would, until its last
    cell has run.

    A run whose cells were dropped (a kernel that was still attaching) is run again; "Select Kernel"
    dialogs are answered with :func:`accept_select_kernel` first.

    Raises:
        AssertionError: if the last cell has not run after ``tries`` runs.
    """
    prompts = notebook.locator(".jp-Notebook .jp-Cell .jp-InputPrompt")
    select_kernel = page.locator(SELECT_KERNEL)
    for _ in range(tries):
        if select_kernel.count() and accept_select_kernel(page):
            wait_for_kernel(page, notebook)
        prompts.first.click()  # the notebook has the focus
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        queued, deadline = False, time.monotonic() + 30
        while time.monotonic() < deadline and not select_kernel.count():
            last = prompts.last.inner_text()  # [ ]: not run, [*]: queued or running, [3]: ran
            if re.search(r"[0-9]", last):
                return
            if "*" in last and not queued:
                queued, deadline = True, time.monotonic() + 4 * TIMEOUT_MS / 1000
            elif "*" not in last and queued:
                break  # the queued cells were dropped: run again
            time.sleep(0.5)
        if not select_kernel.count():
            page.keyboard.press("Escape")  # close the Run menu if the click left it open
    raise AssertionError(f"Run All Cells never ran the last cell (its prompt: {prompts.last.inner_text()!r})")


def paste_into_cell(page: Any, cell: Any, text: str, markdown: bool = False) -> None:
    """Replace a notebook cell's text with ``text`` as a student pasting it would, in its CodeMirror editor.

    A markdown cell is opened for editing (double click) first and rendered again after. The text
    goes in only once the cell's editor has the focus (a click that lands while the notebook is busy
    would otherwise select every cell instead of the editor's text).
    """
    cell.scroll_into_view_if_needed(timeout=TIMEOUT_MS)
    if markdown and cell.locator(".jp-MarkdownOutput").first.is_visible():
        cell.locator(".jp-MarkdownOutput").first.dblclick()
    cell.locator(".cm-content").click()
    cell.locator(".cm-editor.cm-focused").wait_for(timeout=TIMEOUT_MS)
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.insert_text(text)
    page.keyboard.press("Control+Enter" if markdown else "Escape")


def image_pixels(image: Any) -> np.ndarray:
    """The pixels ``uint8 (H, W, 3)`` an ``<img>`` shows, read from its ``src`` (a ``blob:`` or ``data:``
    URL) in the page itself."""
    data = image.evaluate("async (img) => Array.from(new Uint8Array(await (await fetch(img.src)).arrayBuffer()))")
    return np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB"))


def registered_commands(page: Any, prefix: str) -> list[str]:
    """The ids of the lab's registered commands starting with ``prefix`` (``window.jupyterapp``)."""
    return page.evaluate(f"() => window.jupyterapp.commands.listCommands().filter(c => c.startsWith({prefix!r}))")


def menu_labels(page: Any) -> dict[str, list[str]]:
    """``top menu -> its visible item labels``, by opening each menu of the menu bar in turn."""
    found = {}
    for title in page.locator(".lm-MenuBar-itemLabel").all_inner_texts():
        page.locator(".lm-MenuBar-item", has_text=title).first.click()
        menu = page.locator(".lm-Menu").last
        menu.wait_for(timeout=TIMEOUT_MS)
        found[title] = [t.strip() for t in menu.locator(".lm-Menu-itemLabel").all_inner_texts() if t.strip()]
        page.keyboard.press("Escape")
    return found


def sidebar_titles(page: Any) -> list[str]:
    """The titles (tooltips) of the left and right sidebar tabs."""
    tabs = page.locator(".jp-SideBar .lm-TabBar-tab")
    return [(tabs.nth(i).get_attribute("title") or tabs.nth(i).inner_text()).strip() for i in range(tabs.count())]
