"""A throwaway one-node Slurm cluster for the tests: Debian's ``slurm-wlm`` and ``munge``, on localhost.

`make test` installs the packages (`make slurm`). :meth:`SlurmCluster.start` writes a munge key and a
``slurm.conf`` into a private folder, starts ``munged``, ``slurmctld`` and ``slurmd`` on free ports of
127.0.0.1, and waits until the node is idle; :meth:`SlurmCluster.stop` stops them by their process
ids. Client commands (``sbatch``, ``squeue``) find the cluster through ``SLURM_CONF``
(:meth:`SlurmCluster.env`). The daemons run as root, as on a real cluster; jobs run as whoever
submitted them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SBIN = Path("/usr/sbin")


class SlurmUnavailableError(RuntimeError):
    """No Slurm or munge daemons on this machine, or not root to run them."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """Start with :meth:`start`, submit with the client commands under :meth:`env`, end with :meth:`stop`."""

    def __init__(self, cpus: int = 2, memory_mb: int = 8000) -> None:
        missing = [name for name in ("munged", "slurmctld", "slurmd") if not (SBIN / name).exists()]
        if missing:
            raise SlurmUnavailableError(f"{', '.join(missing)} not found; install slurm-wlm and munge (make slurm)")
        if os.geteuid() != 0:
            raise SlurmUnavailableError("slurmd must run as root to start jobs as their users")
        self.dir = Path(tempfile.mkdtemp(prefix="course-slurm-"))
        os.chmod(self.dir, 0o755)  # users' client commands read slurm.conf and reach munge's socket
        self.cpus, self.memory_mb = cpus, memory_mb
        self.conf = self.dir / "slurm.conf"
        self.munge_socket = self.dir / "munge" / "munge.socket"

    def env(self) -> dict[str, str]:
        """What a client command needs to find this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        d = self.dir
        for folder in ("munge", "state", "spool", "log"):
            (d / folder).mkdir()
        os.chmod(d / "munge", 0o755)
        (d / "munge" / "munge.key").write_bytes(os.urandom(1024))
        os.chmod(d / "munge" / "munge.key", 0o600)
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=coursetest",
                    "SlurmctldHost=localhost(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    "CredType=cred/munge",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"StateSaveLocation={d / 'state'}",
                    f"SlurmdSpoolDir={d / 'spool'}",
                    f"SlurmctldPidFile={d / 'slurmctld.pid'}",
                    f"SlurmdPidFile={d / 'slurmd.pid'}",
                    f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={d / 'log' / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",  # no cgroups needed
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU_Memory",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "SchedulerType=sched/builtin",
                    f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN",
                    "PartitionName=grading Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        os.chmod(self.conf, 0o644)

    def client(self, *argv: str) -> subprocess.CompletedProcess:
        """Run a client command (``sinfo``, ``squeue``...) of this cluster as this process's user."""
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, **self.env()})

    def _run(self, *argv: str) -> None:
        result = self.client(*argv)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed:\n{result.stdout}{result.stderr}\n{self.logs()}")

    def start(self) -> SlurmCluster:
        """Start munged, slurmctld and slurmd; return when the node accepts jobs.

        Raises:
            RuntimeError: if a daemon fails or the node is not idle within 60 s (with the daemons' logs).
        """
        self._write_config()
        d = self.dir
        self._run(
            str(SBIN / "munged"),
            "--force",  # as root, on a private socket and key
            f"--socket={self.munge_socket}",
            f"--key-file={d / 'munge' / 'munge.key'}",
            f"--pid-file={d / 'munge' / 'munged.pid'}",
            f"--log-file={d / 'log' / 'munged.log'}",
            f"--seed-file={d / 'munge' / 'munged.seed'}",
        )
        self._run(str(SBIN / "slurmctld"), "-f", str(self.conf))
        self._run(str(SBIN / "slurmd"), "-f", str(self.conf), "-N", "localhost")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = self.client("sinfo", "--noheader", "--format=%t").stdout.strip()
            if state == "idle":
                return self
            time.sleep(0.5)
        raise RuntimeError(f"the Slurm node is not idle after 60 s (state {state!r})\n{self.logs()}")

    def logs(self) -> str:
        """The end of each daemon's log, for a failure's message."""
        return "\n".join(
            f"--- {log.name}\n{log.read_text()[-1500:]}" for log in sorted((self.dir / "log").glob("*.log"))
        )

    def wait(self, job: str, timeout: float) -> None:
        """Wait until job ``job`` (and every task of an array) has left the queue.

        Raises:
            TimeoutError: if it is still queued or running after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            queued = self.client("squeue", "--noheader", f"--jobs={job}")
            if queued.returncode == 0 and not queued.stdout.strip():
                return
            time.sleep(1)
        raise TimeoutError(f"Slurm job {job} still queued after {timeout:.0f} s\n{self.logs()}")

    def stop(self) -> None:
        """Stop the daemons by their process ids and remove the cluster's folder."""
        pids = []
        for pid_file in (self.dir / "slurmd.pid", self.dir / "slurmctld.pid", self.dir / "munge" / "munged.pid"):
            try:
                pids.append(int(pid_file.read_text().strip()))
                os.kill(pids[-1], signal.SIGTERM)
            except (OSError, ValueError):
                continue
        deadline = time.monotonic() + 10
        for pid in pids:
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie left to its parent counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False
