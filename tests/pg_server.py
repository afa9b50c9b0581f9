"""A throwaway PostgreSQL server for the tests: Debian's binaries, a private data folder, loopback only.

`make test` installs Debian's ``postgresql`` package (`make postgres`) and sets
``COURSE_REQUIRE_SYSTEM=1``, so in CI a missing server fails the tests instead of skipping them.
The server runs as the ``postgres`` user when the tests run as root (PostgreSQL refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server binaries (``initdb``, ``pg_ctl``) on this machine."""


def _bin_dir() -> Path:
    """The folder with ``initdb`` and ``pg_ctl``: on PATH, or Debian's ``/usr/lib/postgresql/<v>/bin``."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise PostgresUnavailableError("no initdb/pg_ctl found; install Debian's postgresql package (make postgres)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """Start with :meth:`start`, make databases with :meth:`create_database`, end with :meth:`stop`."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="course-pg-"))
        self.port = _free_port()
        self.user = "course"
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # postgres will not run as root: hand the folder to the postgres user
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError as err:
                raise PostgresUnavailableError(
                    "running as root and there is no 'postgres' user to run the server"
                ) from err
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self.prefix = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups"]

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.dir / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed:\n{result.stdout}{result.stderr}{tail}")

    def start(self) -> PostgresServer:
        data = self.dir / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", self.user, "--auth=trust", "--no-sync", "-E", "UTF8")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.dir / "server.log"), "-w", "start"
        )
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"gradebook_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
