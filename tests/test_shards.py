"""``--shard auto``: the shard read from a Kubernetes Indexed Job's or a Slurm job array's variables,
and the manifests in ``docs/cluster/`` run through the real ``course`` command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import cli, pipeline, shards
from autograder.course import PipelineError

CLUSTER = Path(__file__).resolve().parents[1] / "docs" / "cluster"


def slurm_array(first: int, last: int, step: int = 1) -> list[dict[str, str]]:
    """The variables Slurm sets in each task of ``sbatch --array=FIRST-LAST:STEP`` (Slurm's job array guide)."""
    ids = list(range(first, last + 1, step))
    common = {
        "SLURM_ARRAY_JOB_ID": "4242",
        "SLURM_ARRAY_TASK_COUNT": str(len(ids)),
        "SLURM_ARRAY_TASK_MIN": str(ids[0]),
        "SLURM_ARRAY_TASK_MAX": str(ids[-1]),
        "SLURM_ARRAY_TASK_STEP": str(step),
    }
    return [{**common, "SLURM_ARRAY_TASK_ID": str(i)} for i in ids]


def kubernetes_job(completions: int, shards_set: int) -> list[dict[str, str]]:
    """The variables of each pod of an Indexed Job of ``completions`` whose manifest sets ``COURSE_SHARDS``."""
    return [{"JOB_COMPLETION_INDEX": str(i), "COURSE_SHARDS": str(shards_set)} for i in range(completions)]


def _every_share_once(environments: list[dict[str, str]]) -> bool:
    found = [shards.shard_from_environment(env) for env in environments]
    n = len(environments)
    return sorted(found) == [(k, n) for k in range(1, n + 1)]


@pytest.mark.parametrize(
    "environments",
    [
        kubernetes_job(3, 3),
        slurm_array(0, 9),  # --array=0-9
        slurm_array(1, 10),  # --array=1-10
        slurm_array(0, 9, 2),  # --array=0-9:2 -> 0, 2, 4, 6, 8
        slurm_array(1, 7, 3),  # --array=1-7:3 -> 1, 4, 7
        slurm_array(5, 5),  # one task
    ],
    ids=["kubernetes", "slurm-0-9", "slurm-1-10", "slurm-step-2", "slurm-1-7-step-3", "slurm-one-task"],
)
def test_each_task_of_an_array_grades_a_different_share(environments):
    """Does every pod or array task get its own share, so that together they grade each student once?"""
    assert _every_share_once(environments)


def test_the_place_in_an_array_is_counted_from_its_first_index():
    """Is the first task the first share whether the array starts at 0 or 1, and does a step count places?"""
    assert shards.shard_from_environment({"JOB_COMPLETION_INDEX": "0", "COURSE_SHARDS": "2"}) == (1, 2)
    assert [shards.shard_from_environment(env) for env in slurm_array(1, 3)] == [(1, 3), (2, 3), (3, 3)]
    assert shards.shard_from_environment(slurm_array(0, 9, 2)[3]) == (4, 5)  # index 6 of 0, 2, 4, 6, 8
    old_slurm = {k: v for k, v in slurm_array(0, 2)[2].items() if k != "SLURM_ARRAY_TASK_STEP"}
    assert shards.shard_from_environment(old_slurm) == (3, 3)  # no step variable: a step of 1


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "looked for JOB_COMPLETION_INDEX and COURSE_SHARDS .* and SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT"),
        ({"SLURM_JOB_ID": "7"}, "looked for JOB_COMPLETION_INDEX"),  # a Slurm job, not an array
        ({"JOB_COMPLETION_INDEX": "1"}, "COURSE_SHARDS not set.*completions"),
        ({"COURSE_SHARDS": "2"}, "JOB_COMPLETION_INDEX not set"),
        ({"JOB_COMPLETION_INDEX": "2", "COURSE_SHARDS": "2"}, "expected 0 <= index < 2; set COURSE_SHARDS"),
        ({"JOB_COMPLETION_INDEX": "one", "COURSE_SHARDS": "2"}, "JOB_COMPLETION_INDEX='one', expected a whole"),
        ({"JOB_COMPLETION_INDEX": "0", "COURSE_SHARDS": "2", **slurm_array(0, 1)[0]}, "both"),
        ({"SLURM_ARRAY_TASK_ID": "3"}, "SLURM_ARRAY_TASK_COUNT, SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_MAX not"),
        # --array=1,2,9: three tasks from 1 to 9 cannot be placed from the variables
        ({**slurm_array(1, 3)[0], "SLURM_ARRAY_TASK_MAX": "9"}, "not evenly spaced"),
        ({**slurm_array(0, 9, 2)[0], "SLURM_ARRAY_TASK_ID": "3"}, "SLURM_ARRAY_TASK_ID=3 is not one of"),
    ],
)
def test_missing_or_inconsistent_variables_are_clear_errors(environ, message):
    """Is a process without a scheduler's variables, or with inconsistent ones, refused with what was looked for?"""
    with pytest.raises(PipelineError, match=message):
        shards.shard_from_environment(environ)


def test_shard_auto_without_a_scheduler_stops_the_command_line(monkeypatch, capsys):
    """Does `course autograde --shard auto` outside a scheduler stop with an argparse error naming the variables?"""
    for name in (*shards.KUBERNETES, *shards.SLURM):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as stop:
        cli.main(["autograde", "hw1_vae", "subs", "--out", "out", "--shard", "auto"])
    assert stop.value.code == 2
    assert "--shard: --shard auto: no scheduler said" in capsys.readouterr().err


class _GradedError(Exception):
    """Raised by the stand-in for the pipeline, with the arguments the command line gave it."""


def _shard_the_command_gets(argv: list[str], environ: dict[str, str], monkeypatch) -> tuple[int, int]:
    """``shard=`` that ``course`` with ``argv`` hands the pipeline in ``environ`` (nothing graded)."""

    def record(*args, **kwargs):
        raise _GradedError(kwargs)

    monkeypatch.setattr(pipeline, "autograde", record)
    with monkeypatch.context() as m:
        for name in (*shards.KUBERNETES, *shards.SLURM):
            m.delenv(name, raising=False)
        for name, value in environ.items():
            m.setenv(name, value)
        with pytest.raises(_GradedError) as graded:
            cli.main(argv)
    return graded.value.args[0]["shard"]


def _run_with_recording_course(command: list[str], env: dict[str, str], course: Path, cwd: Path) -> dict:
    """Run ``command`` with ``course`` a stand-in that records its arguments and environment."""
    record = cwd / "record.json"
    course.parent.mkdir(parents=True, exist_ok=True)
    course.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"open({str(record)!r}, 'w').write(json.dumps({{'argv': sys.argv[1:], 'env': dict(os.environ)}}))\n"
    )
    course.chmod(0o755)
    subprocess.run(command, env=env, cwd=cwd, check=True, timeout=60)
    return json.loads(record.read_text())


def test_the_kubernetes_manifest_gives_each_pod_its_share(tmp_path, monkeypatch):
    """Does each pod of docs/cluster/grade-job.yaml, run as Kubernetes would, hand `course` its own shard,
    with COURSE_SHARDS equal to the Job's completions and the gradebook's URL from a Secret?"""
    yaml = pytest.importorskip("yaml")
    job = yaml.safe_load((CLUSTER / "grade-job.yaml").read_text())
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env[shards.SHARD_COUNT]["value"] == str(spec["completions"])
    assert env["COURSE_DB"]["valueFrom"]["secretKeyRef"]["key"] == "url"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    claims = {v["name"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert mounts["/submissions"]["readOnly"] and {m["name"] for m in mounts.values()} == claims
    found = []
    for index in range(spec["completions"]):  # what Kubernetes and the manifest set in this pod
        pod_env = {name: e["value"] for name, e in env.items() if "value" in e}
        pod_env |= {
            shards.KUBERNETES_INDEX: str(index),
            "COURSE_DB": "postgresql://grader@db/course",
            "PGPASSWORD": "x",
        }
        bin_dir = tmp_path / f"pod{index}" / "bin"
        run = _run_with_recording_course(
            container["command"],
            {"PATH": f"{bin_dir}:{os.environ['PATH']}", **pod_env},
            bin_dir / "course",
            bin_dir.parent,
        )
        assert run["argv"][:2] == ["autograde", "hw1_vae"]
        found.append(_shard_the_command_gets(run["argv"], run["env"], monkeypatch))
    assert found == [(k, spec["completions"]) for k in range(1, spec["completions"] + 1)]


def test_the_sbatch_script_gives_each_array_task_its_share(tmp_path, monkeypatch):
    """Does each task of docs/cluster/grade.sbatch's --array, with the variables Slurm sets, hand `course`
    its own shard?"""
    script = (CLUSTER / "grade.sbatch").read_text()
    (first, last, step), *more = [
        (int(a), int(b), int(s or 1))
        for a, b, s in re.findall(r"^#SBATCH --array=(\d+)-(\d+)(?::(\d+))?$", script, re.M)
    ]
    assert not more
    found = []
    for task in slurm_array(first, last, step):
        cwd = tmp_path / f"task{task['SLURM_ARRAY_TASK_ID']}"
        env = {"PATH": os.environ["PATH"], "COURSE_DB": "postgresql://grader@db/course", **task}
        run = _run_with_recording_course(
            ["bash", str(CLUSTER / "grade.sbatch"), "hw1_vae", "subs"], env, cwd / ".venv" / "bin" / "course", cwd
        )
        assert run["argv"][:3] == ["autograde", "hw1_vae", "subs"]
        found.append(_shard_the_command_gets(run["argv"], run["env"], monkeypatch))
    n = len(found)
    assert found == [(k, n) for k in range(1, n + 1)] and n == len(range(first, last + 1, step))
