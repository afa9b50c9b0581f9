"""Write docs/performance.md and its figures from the benchmarks' JSON in benchmarks/results/.

``make bench`` runs every ``benchmarks/bench_*.py`` and keeps each one's JSON as
``benchmarks/results/<name>.json``; then ``python benchmarks/report.py`` rewrites the page, so the
figures in the docs are always the measured ones (``tests/test_docs.py`` fails when the page and
the JSON disagree). Per benchmark the page gives the machine, load and date, then one short table:
what was measured, the anchor measured in the same run, our figure, their ratio (only where the two
are the same quantity), the target and whether it is met; then the plots, where a picture reads
faster (PNG, matplotlib, in docs/figures/), and a link to the raw JSON.

A GPU figure comes from ``bench_training.py --device cuda`` saved as
``benchmarks/results/training_cuda.json``; without that file the training table says that no GPU
was measured.

Usage: ``python benchmarks/report.py [--check]`` (``--check``: exit 1 if the page is out of date).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCS = HERE.parent / "docs"
PAGE = DOCS / "performance.md"
FIGURES = DOCS / "figures"


class Row(NamedTuple):
    """One line of a benchmark's table.

    Attributes:
        what: what was measured, with its unit.
        anchor: the reference measured in the same run (e.g. ``"plain loop 310 images/s"``), or ``""``.
        ours: our figure.
        ratio: ours over the anchor, only where both are the same quantity (else ``""``).
        target: the target (``""`` where there is none).
        met: whether the target is met (None: no target).
    """

    what: str
    anchor: str
    ours: str
    ratio: str = ""
    target: str = ""
    met: bool | None = None


Figure = Callable[[dict, Path], None]


class Section(NamedTuple):
    """How one benchmark is shown: its title, its table rows, and its figures (file name -> drawer)."""

    title: str
    rows: Callable[[dict, dict[str, dict]], list[Row]]
    figures: dict[str, tuple[str, Figure]]


def _num(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, without exponent for ordinary magnitudes."""
    if value is None:
        return "n/a"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _times(ratio: float) -> str:
    return f"{ratio:.2f}x"


def _get(data: dict, *keys: str, default: Any = None) -> Any:
    """``data[k1][k2]...`` or ``default`` where a key is missing."""
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


# --- training -------------------------------------------------------------------------------


def training_rows(data: dict, others: dict[str, dict]) -> list[Row]:
    """fit against the plain loop and against the matmul rate; auto's trial; the GPU figure."""
    base = data["baseline"]["images_per_s"]
    fp32, bf16 = data["matmul_fp32_gflop_per_s"], data.get("matmul_bf16_gflop_per_s")
    targets = data["targets"]
    package = data["package"]
    rows = _speed_rows("`fit`, every default (float32)", package["float32"], targets, "fit_defaults", base, fp32)
    if data.get("train_vae"):
        rows += _speed_rows("`course train-vae`, every default", data["train_vae"], targets, "train_vae", base, fp32)
    for name, path in package.items():
        if name == "float32":
            continue
        trained = _get(path, "trial", "chosen", default=name) if name == "auto" else name
        limit = bf16 if trained != "float32" and bf16 else fp32
        rows.append(
            Row(
                f"`fit(precision={name!r})`" + (f" (trained {trained})" if name == "auto" else "") + ", images/s",
                f"plain loop {_num(base)}",
                _num(path["images_per_s"]),
                _times(path["speedup_vs_baseline"]),
            )
        )
        if trained != "float32" and bf16:
            rows.append(
                Row(
                    f"`fit(precision={name!r})`, GFLOP/s",
                    f"bfloat16 matmul {_num(limit)}",
                    _num(path["gflop_per_s"]),
                    f"{path['fraction_of_own_matmul']:.2f}",
                )
            )
    trial = targets["auto_trial_share_of_shortest_measured_run"]
    own = _get(package, "auto", "trial_cost", "trial_seconds", default=None)
    rows.append(
        Row(
            "`precision='auto'` trial, s added to a run (fresh processes)",
            f"a {trial['run_steps']}-step run",
            f"{trial['seconds']:.2f}" + ("" if own is None else f" ({own:.2f} of its own)"),
            f"{100 * trial['share']:.1f}%",
            f"<= {100 * trial['target']:.0f}%",
            trial["met"],
        )
    )
    rows.append(
        Row(
            "`auto` tries bfloat16 only with native support",
            "CPU flags: " + ("avx512_bf16 or amx_bf16" if data.get("native_bfloat16") else "neither"),
            f"picked {targets['auto_picked']}",
            target="never without",
            met=targets["auto_never_tries_bfloat16_without_native_support"],
        )
    )
    checked = [v for v in data["levers"].values() if isinstance(v, dict) and v.get("tolerance") is not None]
    if checked:
        worst = max(v["max_relative_loss_difference"] / v["tolerance"] for v in checked)
        rows.append(
            Row(
                f"levers' losses, first steps ({len(checked)} levers)",
                "plain loop's losses",
                f"worst at {100 * worst:.0f}% of its tolerance",
                target="1e-4 float32, 3% bfloat16",
                met=all(v["losses_match_plain_loop"] for v in checked),
            )
        )
    rows += _gpu_rows(others.get("training_cuda"))
    return rows


def _speed_rows(what: str, figures: dict, targets: dict, name: str, base: float, fp32: float) -> list[Row]:
    """``figures`` against the plain loop and the float32 matmul rate, with the targets
    ``{name}_vs_plain_loop`` and ``{name}_fraction_of_fp32_matmul`` (``bench_training.speed_targets``)."""
    vs_loop = targets[f"{name}_vs_plain_loop"]
    vs_matmul = targets[f"{name}_fraction_of_fp32_matmul"]
    return [
        Row(
            f"{what}, images/s",
            f"plain loop {_num(base)}",
            _num(figures["images_per_s"]),
            _times(vs_loop["ratio"]),
            f">= {vs_loop['target']}x",
            vs_loop["met"],
        ),
        Row(
            f"{what}, GFLOP/s",
            f"float32 matmul {_num(fp32)}",
            _num(figures["gflop_per_s"]),
            f"{vs_matmul['fraction']:.2f}",
            f">= {vs_matmul['target']}",
            vs_matmul["met"],
        ),
    ]


def _gpu_rows(cuda: dict | None) -> list[Row]:
    """``course train-vae`` on a GPU, from ``training_cuda.json``; a row saying none was measured without it."""
    if cuda is None:
        how = "`bench_training.py --device cuda > benchmarks/results/training_cuda.json` on a GPU"
        return [Row("`course train-vae` on a GPU, images/s", "", f"no GPU measured ({how})")]
    bf16 = cuda["matmul_bf16_gflop_per_s"]
    date = _get(cuda, "machine", "date", default="")
    return [
        Row(
            f"`course train-vae --precision {name}` on {cuda['gpu']} ({date}), GFLOP/s",
            f"bfloat16 matmul {_num(bf16)}",
            f"{_num(row['gflop_per_s'])} ({_num(row['images_per_s'])} images/s)",
            f"{row['fraction_of_matmul_bf16']:.2f}",
        )
        for name, row in cuda["train_vae"].items()
    ]


def training_notes(data: dict) -> list[str]:
    """The sentence that says which operator holds the FLOP rate back, from the profile of ``fit``'s epoch."""
    held = data["targets"]["fit_defaults_fraction_of_fp32_matmul"]
    profile = data.get("profile", {})
    rates = profile.get("convolution_rates", {})
    parts = [
        f"{kind} {_num(rate['gflop_per_s'])} GFLOP/s ({rate['fraction_of_matmul']:.2f} of float32 matmul)"
        for kind, rate in rates.items()
    ]
    share = profile.get("share", {})
    top = sorted(share.items(), key=lambda kv: kv[1], reverse=True)[:4]
    first = (
        f"Furthest below the float32 matmul rate in the profiled `fit` epoch (which `course train-vae` runs): "
        f"**{held['held_back_by']}**, {held['held_back_seconds']:.2f} s where that rate would need "
        f"{held['held_back_seconds_at_matmul_rate']:.2f} s ({100 * held['held_back_excess_share_of_epoch']:.0f}% of "
        "the epoch lost there). Rates in that epoch: " + "; ".join(parts) + "."
    )
    return [
        first,
        "Where one `fit` epoch goes (torch.profiler, `bench_training.py --profile`): "
        + ", ".join(f"{name} {100 * value:.0f}%" for name, value in top)
        + ".",
    ]


def training_figure(data: dict, path: Path) -> None:
    """Images/s of the plain loop, each ``fit`` path and each lever, as horizontal bars."""
    bars = {"plain loop (anchor)": data["baseline"]["images_per_s"]}
    bars |= {f"fit {name}": row["images_per_s"] for name, row in data["package"].items()}
    if data.get("train_vae"):
        bars["course train-vae"] = data["train_vae"]["images_per_s"]
    bars |= {
        "loop, " + name.replace("_", " ").removeprefix("baseline "): row["images_per_s"]
        for name, row in data["levers"].items()
        if isinstance(row, dict) and "images_per_s" in row
    }
    ours = ("fit", "course")
    colours = ["#444444" if k.startswith("plain") else "#1f77b4" if k.startswith(ours) else "#aec7e8" for k in bars]
    # dark: the anchor; blue: fit and course train-vae; light: the plain loop with one lever changed
    _bar_chart(
        list(bars), list(bars.values()), colours, f"images per second (batch {data['batch_size']})", path, reference=0
    )


# --- collection, memory, grading, watch, explorer -------------------------------------------------


def collection_rows(data: dict, others: dict[str, dict]) -> list[Row]:
    """Frames per second per environment against the template's loop."""
    rows = []
    for env, result in data["results"].items():
        rate = result["frames_per_s"]
        met = _get(data, "targets", "at_least_2x_template_loop", env)
        rows.append(
            Row(
                f"{env} frames/s",
                f"template loop {_num(rate['template_loop'])}",
                _num(rate["package"]),
                _times(result["speedup_vs_template_loop"]),
                ">= 2x",
                met,
            )
        )
    same = data["targets"].get("same_frames_for_same_seed", {})
    rows.append(
        Row("same frames for the same seed", "serial rendering", "identical", "", "identical", all(same.values()))
    )
    return rows


def memory_rows(data: dict, others: dict[str, dict]) -> list[Row]:
    """Peak resident memory of training from shards larger than it."""
    reference = _get(data, "results", "reference_memory_map_pass", "ru_maxrss_mb")
    rows = []
    for name, result in data["results"].items():
        if name == "reference_memory_map_pass":
            continue
        rows.append(
            Row(
                f"{name.replace('_', ' ')}: peak RSS, MB ({result.get('frames_read', 0):,} frames read)",
                f"memory-map pass over the same shards {_num(reference)}",
                _num(result["ru_maxrss_mb"]),
                target="< 1024",
                met=_get(data, "targets", "peak_rss_under_1024_mb", name),
            )
        )
    return rows


def grading_rows(data: dict, others: dict[str, dict]) -> list[Row]:
    """One submission's time; a class of 20 with two workers against nbgrader one at a time."""
    targets = data["targets"]
    one = data["one_submission"]
    rows = [
        Row(
            f"one {name} submission, s",
            "",
            _num(result["wall_seconds"]),
            target="< 60" if name == "hw1_vae" else "",
            met=targets.get("one_hw1_under_60_s") if name == "hw1_vae" else None,
        )
        for name, result in one.items()
    ]
    serial, parallel = _get(data, "class_hw1", "workers_1"), _get(data, "class_hw1", "workers_2")
    if serial and parallel:
        rows.append(
            Row(
                f"class of {parallel['students']} hw1_vae, s per student",
                f"nbgrader one at a time {_num(serial['seconds_per_student'])}",
                f"{parallel['workers']} workers {_num(parallel['seconds_per_student'])}",
                _times(data["class_hw1"]["speedup_2_vs_1"]),
                ">= 1.7x",
                targets.get("two_workers_at_least_1.7x"),
            )
        )
        rows.append(
            Row(
                "judging, share of grading time",
                "",
                f"{100 * parallel['judge_share']:.1f}%",
                target="<= 10%",
                met=targets.get("judging_at_most_10_percent"),
            )
        )
    rows.append(Row("every known submission scored as expected", "", "", met=targets.get("all_full_marks")))
    return rows


def grading_figure(data: dict, path: Path) -> None:
    """Seconds per submission of the class runs, one bar per submission, for each worker count."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 3.2))
    for run in data.get("class_hw1", {}).values():
        if isinstance(run, dict) and run.get("student_seconds"):
            seconds = run["student_seconds"]
            workers = f"{run['workers']} worker" + ("s" if run["workers"] > 1 else "")
            ax.plot(range(1, len(seconds) + 1), seconds, "o-", label=f"{workers}, {_num(run['wall_seconds'])} s in all")
    ax.axhline(60, color="#d62728", linestyle="--", linewidth=1, label="target for one submission (60 s)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("submission (a class of hw1_vae)")
    ax.set_ylabel("seconds to grade")
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False, fontsize=8)
    _save(fig, path)


def watch_rows(data: dict, others: dict[str, dict]) -> list[Row]:
    """Submit-to-feedback time of ``course watch``."""
    targets = data["targets"]
    return [
        Row(
            f"submit to feedback, s ({data['students']} student(s), {data['workers']} worker(s))",
            "",
            f"first {_num(data['first_s'])}, last {_num(data['last_s'])}",
            target="first < 180",
            met=targets.get("first_feedback_within_3_min"),
        ),
        Row("every student got feedback, full marks", "", "", met=targets.get("every_student_got_feedback")),
    ]


def watch_figure(data: dict, path: Path) -> None:
    """Seconds from each student's submission to their feedback."""
    seconds = data["seconds_submit_to_feedback"]
    names = list(seconds)
    colours = ["#1f77b4"] * len(names)
    _bar_chart(names, list(seconds.values()), colours, "seconds from submit to feedback", path, target=180)


def explorer_rows(data: dict, others: dict[str, dict]) -> list[Row]:
    """Slider-to-image latency per model, as in a kernel (threaded)."""
    target = data["target_ms"]
    return [
        Row(
            f"{model.replace('_', ' ')}: slider to image, ms (median, p90)",
            "",
            f"{_num(result['threaded']['median_ms'])}, {_num(result['threaded']['p90_ms'])}",
            target=f"< {_num(target)}",
            met=result["threaded"]["p90_ms"] < target,
        )
        for model, result in data["results"].items()
    ]


def report_rows(data: dict, others: dict[str, dict]) -> list[Row]:
    """``course report`` on a generated class, beside ``course export`` of the same gradebook."""
    return [
        Row(
            f"`course report`, {data['students']} students, s (command, imports included)",
            f"`course export` {_num(data['anchor_course_export_s'])} s",
            _num(data["course_report_s"]),
            _times(data["course_report_s"] / data["anchor_course_export_s"]),
            f"< {_num(data['target_s'])}",
            data["meets_target"],
        ),
        *(
            [
                Row(
                    f"`course report --term`, {data['students']} students and 2 homeworks, s",
                    "",
                    _num(data["course_report_term_s"]),
                    target=f"< {_num(data['target_s'])}",
                    met=data["course_report_term_s"] < data["target_s"],
                ),
                Row(
                    "students whose total differs from grades.csv: class report, term page, Canvas file",
                    f"{data['late_submissions']} late, {data['extensions']} extensions",
                    str(sum(len(v) for kinds in data["disagreements"].values() for v in kinds.values())),
                    target="0",
                    met=data["totals_agree"],
                ),
            ]
            if "course_report_term_s" in data
            else []
        ),
    ]


def similarity_rows(data: dict, others: dict[str, dict]) -> list[Row]:
    """``course similarity`` on a generated class."""
    return [
        Row(
            f"`course similarity`, {data['students']} students ({data['pairs_compared']:,} pairs), s",
            "",
            _num(data["seconds"]),
            target=f"< {_num(data['target_s'])}",
            met=data["targets"]["class_of_200_within_1_min"],
        )
    ]


_UNIQUE_HINTED = "every bug whose signature no other bug shares has a hint"


def hints_rows(data: dict, others: dict[str, dict]) -> list[Row]:
    """Leave-one-out precision of the feedback hints on the mutant library."""
    shown = data["overall"]["hints in the feedback"]
    unknown = data["unknown_bugs"]
    return [
        Row(
            f"hints right when shown, leave-one-out over {data['mutants']} mutants of {data['bugs']} bugs",
            "",
            f"{shown['right']} of {shown['shown']} ({_num(shown['precision'])})",
            target=f">= {_num(data['threshold'])}",
            met=data["targets"]["every hint in the feedback has precision >= threshold"],
        ),
        Row(
            "bugs with a hint in the feedback",
            "",
            f"{data['bugs_with_a_hint_in_the_feedback']} of {data.get('known_bugs', data['bugs'])}",
            target="each bug no other shares a signature with" if _UNIQUE_HINTED in data["targets"] else "",
            met=data["targets"].get(_UNIQUE_HINTED),
        ),
        Row(
            "a bug held out whole: mutants given another bug's hint",
            "",
            f"{unknown['hinted']} of {unknown['held_out']}",
        ),
    ]


def generic_rows(data: dict, others: dict[str, dict]) -> list[Row]:
    """A benchmark without its own table: each of its targets, met or not."""

    def flatten(value: Any, prefix: str) -> list[Row]:
        if isinstance(value, dict):
            return [row for key, item in value.items() for row in flatten(item, f"{prefix}{key} / ")]
        name = prefix.removesuffix(" / ").replace("_", " ")
        if isinstance(value, bool):
            return [Row(name, "", "", met=value)]
        return [Row(name, "", str(value))]

    return flatten(data.get("targets", {}), "")


def _bar_chart(
    labels: list[str],
    values: list[float],
    colours: list[str],
    xlabel: str,
    path: Path,
    reference: int | None = None,
    target: float | None = None,
) -> None:
    """Horizontal bars with their values written at the end; ``reference``: a bar drawn as a dashed line too."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.32 * len(labels) + 1.0))
    y = range(len(labels))[::-1]
    ax.barh(list(y), values, color=colours)
    ax.set_yticks(list(y), labels, fontsize=8)
    for yi, value in zip(y, values, strict=True):
        ax.text(value, yi, f" {value:,.0f}", va="center", fontsize=7)
    if reference is not None:
        ax.axvline(values[reference], color="#444444", linestyle=":", linewidth=1)
    if target is not None:
        ax.axvline(target, color="#d62728", linestyle="--", linewidth=1, label=f"target ({target:g})")
        ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_xlim(0, max([*values, target or 0]) * 1.15)
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    """Save ``fig`` as a PNG with fixed metadata (the same data give the same bytes), and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


#: The sections in page order; a benchmark not listed gets :func:`generic_rows`, after these, by name.
SECTIONS: dict[str, Section] = {
    "training": Section(
        "Training the World Models VAE",
        training_rows,
        {
            "training_images_per_s.png": (
                "Images per second: plain loop, fit, the loop with one lever changed",
                training_figure,
            )
        },
    ),
    "collection": Section("Collecting frames from gymnasium environments", collection_rows, {}),
    "memory": Section("Memory while training on shards larger than memory", memory_rows, {}),
    "grading": Section(
        "Autograding through nbgrader (sandboxed, with feedback)",
        grading_rows,
        {"grading_seconds_per_submission.png": ("Seconds to grade each submission of a class", grading_figure)},
    ),
    "watch": Section(
        "Submit to feedback with `course watch`",
        watch_rows,
        {"watch_submit_to_feedback.png": ("Seconds from submission to feedback, per student", watch_figure)},
    ),
    "explorer_latency": Section("The latent explorer's update time", explorer_rows, {}),
    "report": Section("The class report of a class of 500", report_rows, {}),
    "similarity": Section("Similarity review of a class of 200", similarity_rows, {}),
    "hints": Section("Feedback hints: how often the named bug is the right one", hints_rows, {}),
}
#: Results shown inside another benchmark's section rather than on their own.
MERGED = {"training_cuda": "training"}
NOTES: dict[str, Callable[[dict], list[str]]] = {"training": training_notes}


def _machine(data: dict) -> str:
    """Machine, load and date of one result, in one sentence."""
    machine = data.get("machine", {})
    parts = [machine.get("cpu", "an unrecorded CPU")]
    if machine.get("usable_cpus"):
        parts.append(f"{machine['usable_cpus']} usable CPUs")
    if machine.get("isa"):
        parts.append("/".join(machine["isa"]))
    if machine.get("torch"):
        parts.append(f"PyTorch {machine['torch']}")
    loads = []
    for when in ("start", "end"):
        conditions = data.get(f"conditions_{'before' if when == 'start' else 'after'}", {})
        load = []
        if isinstance(conditions.get("load_average"), list):
            load.append(f"load average {conditions['load_average'][0]}")
        if conditions.get("cpu_busy_percent_others") is not None:
            load.append(f"other processes using {conditions['cpu_busy_percent_others']}% of the CPUs")
        if load:
            loads.append(f"at the {when} {' and '.join(load)}")
    load_text = f"; {', '.join(loads)}" if loads else ""
    medians = f" Medians over {data['medians_over']}." if data.get("medians_over") else ""
    return f"{machine.get('date', 'Undated')}, {', '.join(map(str, parts))}{load_text}.{medians}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(rows: list[Row]) -> list[str]:
    lines = ["| measured | anchor (same run) | ours | ratio | target | met? |", "|---|---|---|---|---|---|"]
    for row in rows:
        met = "" if row.met is None else "yes" if row.met else "**no**"
        cells = [row.what, row.anchor, row.ours, row.ratio, row.target, met]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _load(results: Path) -> dict[str, tuple[str, dict]]:
    """``benchmark name -> (file name, JSON)`` of every result file."""
    found = {}
    for path in sorted(Path(results).glob("*.json")):
        data = json.loads(path.read_text())
        found[data.get("benchmark", path.stem)] = (path.name, data)
    return found


def render_section(name: str, file: str, data: dict, others: dict[str, dict]) -> list[str]:
    """The markdown of one benchmark: title, machine, table, notes, figures, raw JSON link."""
    section = SECTIONS.get(name, Section(name.replace("_", " ").capitalize(), generic_rows, {}))
    lines = [f"## {section.title}", "", _machine(data), "", *_table(section.rows(data, others)), ""]
    notes = NOTES.get(name, lambda data: [])(data)
    lines += [*notes, ""] if notes else []
    for figure, (caption, _) in section.figures.items():
        lines += [f"![{caption}](figures/{figure})", ""]
    links = [f"[{file}](../benchmarks/results/{file})"]
    links += [f"[{others_file}](../benchmarks/results/{others_file})" for others_file in _merged_files(name, others)]
    return [*lines, "Raw results: " + ", ".join(links) + ".", ""]


def _merged_files(name: str, others: dict[str, dict]) -> list[str]:
    return [others[key]["_file"] for key, into in MERGED.items() if into == name and key in others]


def render(results: Path = RESULTS) -> str:
    """The whole page from every ``results/*.json``."""
    found = _load(results)
    merged = {key: {**found[key][1], "_file": found[key][0]} for key in MERGED if key in found}
    shown = {name: item for name, item in found.items() if name not in MERGED}
    order = [n for n in SECTIONS if n in shown] + sorted(n for n in shown if n not in SECTIONS)
    lines = [
        "# Performance",
        "",
        "Each table sets our figure beside an anchor measured in the same run on the same machine (a plain",
        "PyTorch loop, the template's collector, nbgrader one submission at a time), so that the ratio holds",
        "even on a busy machine; the machine, its load at the start and the date head each section.",
        "Generated by `python benchmarks/report.py` from `benchmarks/results/*.json` (`make bench`); do not",
        "edit by hand.",
        "",
    ]
    if not order:
        lines += ["No results yet: run `make bench`.", ""]
    for name in order:
        file, data = shown[name]
        lines += render_section(name, file, data, merged)
    return "\n".join(lines).rstrip() + "\n"


def write_figures(results: Path = RESULTS, figures: Path = FIGURES) -> list[Path]:
    """Draw every section's figures from the results into ``figures``; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    written = []
    for name, (_, data) in _load(results).items():
        for figure, (_, draw) in SECTIONS.get(name, Section("", generic_rows, {})).figures.items():
            draw(data, figures / figure)
            written.append(figures / figure)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/performance.md is out of date")
    args = parser.parse_args()
    page = render()
    if args.check:
        if not PAGE.exists() or PAGE.read_text() != page:
            print(f"{PAGE} is out of date: run python benchmarks/report.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page)
    for path in write_figures():
        print(f"wrote {path}")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
