"""``course autograde --shard auto``: the share of the class this process grades, told by its scheduler.

A cluster scheduler starts N copies of one command and tells each copy its place among them in
environment variables; :func:`shard_from_environment` turns that into the ``(k, n)`` of
:func:`autograder.pipeline.autograde` (grade every n-th student from the k-th, k from 1). Two
schedulers are read (manifests in ``docs/cluster/``, guide in ``docs/clusters.md``):

- **Kubernetes Indexed Jobs** (``completionMode: Indexed``) set ``JOB_COMPLETION_INDEX``, from 0 to
  ``completions - 1``, in each pod. Kubernetes does not pass ``completions`` itself to the pod, so the
  manifest sets ``COURSE_SHARDS`` to the same number.
- **Slurm job arrays** (``sbatch --array=...``) set ``SLURM_ARRAY_TASK_ID`` (this task's index),
  ``SLURM_ARRAY_TASK_COUNT`` (how many tasks), ``SLURM_ARRAY_TASK_MIN`` and ``SLURM_ARRAY_TASK_MAX``
  (the lowest and highest index) and ``SLURM_ARRAY_TASK_STEP`` (the step of ``--array=0-9:2``), as
  Slurm's job array guide (https://slurm.schedmd.com/job_array.html) lists them. An array may start at
  0 or 1 and have a step; a task's place is ``(id - min) / step``. Indices that are not evenly spaced
  (``--array=1,2,9``) cannot be placed from these variables and are refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from autograder.course import PipelineError

#: Set by Kubernetes in each pod of an Indexed Job: 0 .. completions - 1.
KUBERNETES_INDEX = "JOB_COMPLETION_INDEX"
#: Set by the Job's manifest to its ``completions`` (Kubernetes does not pass it to the pod).
SHARD_COUNT = "COURSE_SHARDS"
#: Set by Slurm in each task of a job array.
SLURM_TASK_ID = "SLURM_ARRAY_TASK_ID"
SLURM_TASK_COUNT = "SLURM_ARRAY_TASK_COUNT"
SLURM_TASK_MIN = "SLURM_ARRAY_TASK_MIN"
SLURM_TASK_MAX = "SLURM_ARRAY_TASK_MAX"
SLURM_TASK_STEP = "SLURM_ARRAY_TASK_STEP"
#: The variables read for each scheduler, in the order error messages name them; Slurm's step may be
#: unset (a step of 1), the others may not.
KUBERNETES = (KUBERNETES_INDEX, SHARD_COUNT)
SLURM_REQUIRED = (SLURM_TASK_ID, SLURM_TASK_COUNT, SLURM_TASK_MIN, SLURM_TASK_MAX)
SLURM = (*SLURM_REQUIRED, SLURM_TASK_STEP)


def _integer(environ: Mapping[str, str], name: str, default: int | None = None) -> int:
    """The whole number in ``environ[name]`` (``default`` when unset and a default is given).

    Raises:
        PipelineError: if it is unset (without a default) or not a whole number.
    """
    if name not in environ and default is not None:
        return default
    if name not in environ:
        raise PipelineError(f"--shard auto: {name} is not set")
    try:
        return int(environ[name])
    except ValueError:
        raise PipelineError(f"--shard auto: {name}={environ[name]!r}, expected a whole number") from None


def kubernetes_shard(environ: Mapping[str, str]) -> tuple[int, int]:
    """``(k, n)`` of a pod of a Kubernetes Indexed Job: ``(JOB_COMPLETION_INDEX + 1, COURSE_SHARDS)``.

    Raises:
        PipelineError: if either variable is missing or not a whole number, or the index is not in
            ``0 .. COURSE_SHARDS - 1`` (``COURSE_SHARDS`` differs from the Job's ``completions``).
    """
    missing = [name for name in KUBERNETES if name not in environ]
    if missing:
        raise PipelineError(
            f"--shard auto: {', '.join(missing)} not set; a Kubernetes Indexed Job sets {KUBERNETES_INDEX} "
            f"and its manifest sets {SHARD_COUNT} to the Job's completions (docs/cluster/grade-job.yaml)"
        )
    index, n = _integer(environ, KUBERNETES_INDEX), _integer(environ, SHARD_COUNT)
    if not 0 <= index < n:
        raise PipelineError(
            f"--shard auto: {KUBERNETES_INDEX}={index} with {SHARD_COUNT}={n}, expected 0 <= index < {n}; "
            f"set {SHARD_COUNT} to the Job's completions"
        )
    return index + 1, n


def slurm_shard(environ: Mapping[str, str]) -> tuple[int, int]:
    """``(k, n)`` of a task of a Slurm job array: its place among the array's indices, from 1.

    An array ``--array=MIN-MAX:STEP`` has ``n = SLURM_ARRAY_TASK_COUNT`` tasks and the task with
    index ``SLURM_ARRAY_TASK_ID`` is the ``(id - MIN) / STEP + 1``-th (``SLURM_ARRAY_TASK_STEP``
    taken as 1 where unset). ``--array=0-9`` and ``--array=1-10`` both give ``(1, 10) .. (10, 10)``;
    ``--array=0-9:2`` gives ``(1, 5) .. (5, 5)``.

    Raises:
        PipelineError: if a variable other than the step is missing or not a whole number, or the
            indices are not ``MIN, MIN + STEP, .., MAX`` with ``COUNT`` of them (a list such as
            ``--array=1,2,9``), or this task's index is not one of them.
    """
    missing = [name for name in SLURM_REQUIRED if name not in environ]
    if missing:
        raise PipelineError(
            f"--shard auto: {', '.join(missing)} not set in this Slurm job array task; expected all of "
            f"{', '.join(SLURM_REQUIRED)} (set by sbatch --array; Slurm's job array guide)"
        )
    task, n = _integer(environ, SLURM_TASK_ID), _integer(environ, SLURM_TASK_COUNT)
    low, high = _integer(environ, SLURM_TASK_MIN), _integer(environ, SLURM_TASK_MAX)
    step = _integer(environ, SLURM_TASK_STEP, default=1)
    array = f"{SLURM_TASK_MIN}={low}, {SLURM_TASK_MAX}={high}, {SLURM_TASK_STEP}={step}, {SLURM_TASK_COUNT}={n}"
    if n < 1 or step < 1 or high != low + step * (n - 1):
        raise PipelineError(
            f"--shard auto: the Slurm array's indices are not evenly spaced ({array}); submit it as "
            "--array=0-(N-1) (or with a step, --array=0-18:2), or pass --shard K/N to each task"
        )
    if not low <= task <= high or (task - low) % step:
        raise PipelineError(f"--shard auto: {SLURM_TASK_ID}={task} is not one of the array's indices ({array})")
    return (task - low) // step + 1, n


def shard_from_environment(environ: Mapping[str, str]) -> tuple[int, int]:
    """``(k, n)``: grade every n-th student from the k-th, as the scheduler that started this process says.

    Args:
        environ: the process's environment (``os.environ``), read and not changed.

    Returns:
        ``(k, n)`` with ``1 <= k <= n``, as :func:`autograder.pipeline.autograde` takes it.

    Raises:
        PipelineError: if neither a Kubernetes Indexed Job's nor a Slurm job array's variables are
            set (the message names those looked for), both are, or they are inconsistent
            (:func:`kubernetes_shard`, :func:`slurm_shard`).
    """
    on_kubernetes = any(name in environ for name in KUBERNETES)
    on_slurm = any(name in environ for name in SLURM)
    if on_kubernetes and on_slurm:
        set_here = [name for name in (*KUBERNETES, *SLURM) if name in environ]
        raise PipelineError(
            f"--shard auto: both a Kubernetes Indexed Job's and a Slurm job array's variables are set "
            f"({', '.join(set_here)}); expected one scheduler's, or pass --shard K/N"
        )
    if on_kubernetes:
        return kubernetes_shard(environ)
    if on_slurm:
        return slurm_shard(environ)
    raise PipelineError(
        f"--shard auto: no scheduler said which shard this is; looked for {' and '.join(KUBERNETES)} "
        f"(a Kubernetes Indexed Job, docs/clusters.md) and {', '.join(SLURM)} (a Slurm job array, "
        "sbatch --array); pass --shard K/N elsewhere"
    )
