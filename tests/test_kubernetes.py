"""The Kubernetes manifests an administrator is asked to accept: valid, unprivileged, and enough to grade.

The manifests are checked against Kubernetes' own schemas (``kubernetes-validate``) and for what a
cluster's security review looks for. The seccomp profile the grading pod names is compiled with
libseccomp (Debian's ``python3-seccomp``) and applied, with bubblewrap's ``--seccomp``, to the
ordinary grader account's ``course doctor``, which starts a real sandbox and kernel under it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from accounts import GRADER, run_as, shared_folder, user

pytestmark = pytest.mark.slow(seconds=60)
CLUSTER = Path(__file__).resolve().parents[1] / "docs" / "cluster"
MANIFESTS = sorted(CLUSTER.glob("*.yaml"))
#: The oldest Kubernetes whose pods can run the sandbox unprivileged (user namespaces and procMount on by default).
KUBERNETES = "1.33.0"
PROFILE = CLUSTER / "seccomp-userns.json"

#: Compiles the profile (argv[1], Docker/OCI JSON) to a BPF program (argv[2]) with libseccomp.
COMPILE = """
import json, seccomp, sys
profile = json.load(open(sys.argv[1]))
actions = {"SCMP_ACT_ALLOW": seccomp.ALLOW}
filt = seccomp.SyscallFilter(defaction=actions[profile["defaultAction"]])
for rule in profile["syscalls"]:
    for name in rule["names"]:
        try:
            filt.add_rule(seccomp.ERRNO(rule["errnoRet"]), name)
        except (RuntimeError, ValueError):
            pass  # not a call of this architecture
with open(sys.argv[2], "wb") as out:
    filt.export_bpf(out)
"""
#: Asks for ptrace(PTRACE_TRACEME): 0 where it is allowed, -1 (EPERM) under the profile.
TRACEME = "import ctypes; print(ctypes.CDLL(None, use_errno=True).ptrace(0, 0, 0, 0), ctypes.get_errno())"


def _pods(document: dict) -> list[dict]:
    return [document["spec"]["template"]["spec"]] if document["kind"] == "Job" else []


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_each_manifest_is_valid_kubernetes(path):
    """Is each manifest valid against the schemas of Kubernetes 1.33 (strict: no unknown field)?"""
    for document in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(document, KUBERNETES, strict=True)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_no_pod_is_privileged_or_root(path):
    """Does every pod run as a non-root user, with no privilege, no privilege escalation and every
    capability dropped, as a cluster's security review asks?"""
    pods = [pod for document in yaml.safe_load_all(path.read_text()) for pod in _pods(document)]
    assert pods
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            context = container["securityContext"]
            assert "privileged" not in context and context.get("runAsUser", 1) != 0
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}


def test_the_grading_pod_asks_only_what_the_sandbox_needs():
    """Beyond an unprivileged pod, does the grading pod ask only for its own user namespace, an unmasked
    /proc and the course's seccomp profile (no added capability, no host namespace)?"""
    (job,) = yaml.safe_load_all((CLUSTER / "grade-job.yaml").read_text())
    (pod,) = _pods(job)
    assert pod["hostUsers"] is False and not {"hostPID", "hostIPC", "hostNetwork"} & set(pod)
    assert pod["securityContext"]["seccompProfile"] == {"type": "Localhost", "localhostProfile": "course-grader.json"}
    (container,) = pod["containers"]
    assert container["securityContext"]["procMount"] == "Unmasked"
    assert "add" not in container["securityContext"]["capabilities"]


@pytest.fixture(scope="module")
def compiled_profile():
    """The seccomp profile as a BPF program, in a file every user can read."""
    folder = shared_folder("course-seccomp-")
    bpf = folder / "course-grader.bpf"
    subprocess.run(["/usr/bin/python3", "-c", COMPILE, str(PROFILE), str(bpf)], check=True)
    bpf.chmod(0o644)
    return bpf


def _under_profile(bpf: Path, argv: list[str]) -> list[str]:
    """``argv`` started by bubblewrap with the profile's BPF program on descriptor 3 (the shell opens it)."""
    script = 'exec 3<"$0" && exec bwrap --seccomp 3 --dev-bind / / -- "$@"'
    return ["sh", "-c", script, str(bpf), *argv]


def test_a_class_grades_under_the_seccomp_profile(installation, compiled_profile):
    """Under the grading pod's seccomp profile, does the ordinary grader account's ``course doctor`` start
    a sandbox and a kernel (bubblewrap's namespaces and mounts are allowed), while a call the profile
    denies (ptrace) fails with EPERM where it succeeds without it?"""
    grader = user(GRADER)
    doctor = run_as(grader, _under_profile(compiled_profile, [str(installation / ".venv/bin/course"), "doctor"]))
    assert "ok    sandbox:" in doctor.stdout and "ok    kernel:" in doctor.stdout, doctor.stdout
    python = str(installation / ".venv/bin/python")
    denied = run_as(grader, _under_profile(compiled_profile, [python, "-c", TRACEME])).stdout.split()
    allowed = run_as(grader, [python, "-c", TRACEME]).stdout.split()
    assert denied == ["-1", "1"] and allowed[0] == "0", (denied, allowed)


def test_the_profile_allows_what_bubblewrap_needs():
    """Does the profile leave bubblewrap's calls (namespaces, mounts, pivot_root) allowed and deny the
    calls no grader needs (kernel modules, kexec, bpf, keyrings)?"""
    profile = json.loads(PROFILE.read_text())
    denied = {name for rule in profile["syscalls"] for name in rule["names"]}
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert not denied & {"unshare", "clone", "clone3", "setns", "mount", "umount2", "pivot_root", "chroot"}
    assert {"init_module", "kexec_load", "bpf", "keyctl", "ptrace", "open_by_handle_at"} <= denied
