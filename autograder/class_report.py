"""``course report``: one HTML page, with PNG plots, that says how a class did on an assignment.

What an instructor asks after grading, read from the gradebook and from what the grader saw of each
submission (``<out>/course/results/<student>.json``, :func:`autograder.report.save_report`):

- how the points spread, per activity and in total (histograms);
- which graded cells most of the class fails (pass rate per cell) and with which failure: failures
  are grouped by the test that decided (:attr:`autograder.checks.CheckFailed.site`, or the error the
  student's own code raised), never by matching message texts, and each group shows how many
  students it holds and one of its messages;
- how long each submission took to grade;
- the submissions that were repaired, stopped at a limit, whose kernel died or that were flagged for
  review, each linking to its feedback;
- with ``<out>/similarity.json`` (``course similarity``), the pairs of similar answers side by side.

It is written at the end of ``course autograde`` and after each submission ``course watch`` grades;
``course report`` writes it again, from sqlite gradebooks or a shared PostgreSQL one (``--db``).
The numbers are also written as ``report.json`` next to the page.
"""

from __future__ import annotations

import html
import json
import os
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from autograder.gradebook import graded_students, read_gradebook, read_index, redact, sources
from autograder.report import RESULTS_DIR, StudentReport, load_report
from autograder.tamper import REVIEW, TAMPERING

#: The submissions the report lists, by what happened to them: ``Problem.kind`` values of each.
LISTED = {
    "repaired": ("repaired",),
    "missing or unreadable notebooks": ("missing", "unreadable", "ignored"),
    "stopped at a limit": ("cell_timeout", "grading_timeout", "memory", "process_limit"),
    "kernel died": ("kernel_died",),
    "flagged for review": (TAMPERING, REVIEW),
    "not graded": ("nbgrader_failed", "feedback_failed"),
}
#: Failure groups shown per cell.
TOP_FAILURES = 3
#: Similar pairs shown side by side (the most similar first); the rest stay in ``similarity.json``.
SIMILAR_SHOWN = 30


@dataclass
class ClassData:
    """Everything the report shows, gathered once.

    Attributes:
        assignment: the assignment's name.
        cells: rows of ``cells.csv`` for every student (:func:`autograder.gradebook.read_gradebook`).
        reports: what the grader saw of each submission, by student id (those with a saved report).
        similarity: the content of ``similarity.json``, if there is one.
        warnings: files that could not be read, by name, and students the gradebook holds without a
            saved report.
    """

    assignment: str
    cells: list[dict]
    reports: dict[str, StudentReport]
    similarity: dict | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def students(self) -> list[str]:
        """The students of the gradebook, sorted."""
        return sorted({row["student_id"] for row in self.cells})


def gather(
    assignment: str,
    out: Path,
    gradebooks: dict[str, list[str]] | None = None,
    url: str | None = None,
    runs: tuple[Path, ...] = (),
) -> ClassData:
    """Read the grades and the saved reports of a graded class.

    Args:
        assignment: e.g. ``"hw1_vae"``.
        out: the folder ``course autograde`` (or ``watch``) wrote: ``<out>/course`` holds the
            sqlite gradebooks and the saved reports.
        gradebooks: gradebook -> its students (``<out>/course/gradebooks.json`` when ``None``);
            ignored with ``url``.
        url: a shared gradebook (``postgresql://...``): every student graded into it.
        runs: more output folders whose saved reports to read (the other machines of a sharded
            run, when they did not share ``out``).

    Raises:
        PipelineError: if there is no gradebook to read (no graded run in ``out`` and no ``url``).
    """
    out = Path(out)
    root = out / "course"
    if url is not None:
        rows = read_gradebook(assignment, url, graded_students(assignment, url))[1]
    else:
        if gradebooks is None:
            gradebooks = read_index(root)
        rows = [
            row for url_, students in sources(root, gradebooks) for row in read_gradebook(assignment, url_, students)[1]
        ]
    data = ClassData(assignment, sorted(rows, key=lambda r: (r["student_id"], r["notebook"], r["grade_id"])), {})
    for run in (out, *runs):
        for path in sorted((Path(run) / "course" / RESULTS_DIR).glob("*.json")):
            try:
                report = load_report(path)
            except ValueError as err:
                data.warnings.append(str(err))
                continue
            data.reports[report.student_id] = report
    missing = [s for s in data.students if s not in data.reports]
    if missing:
        data.warnings.append(f"no saved grading report for {len(missing)} student(s): {', '.join(missing[:20])}")
    similarity = out / "similarity.json"
    if similarity.exists():
        try:
            data.similarity = json.loads(similarity.read_text())
        except ValueError as err:
            data.warnings.append(f"{similarity} is not JSON ({err})")
    return data


def activity_of(grade_id: str) -> str:
    """The activity a cell belongs to: its ``grade_id`` up to the first ``_`` (``a2_kl`` -> ``a2``)."""
    return grade_id.split("_")[0]


def summarize(data: ClassData) -> dict:
    """The report's numbers (what ``report.json`` holds).

    Returns:
        ``{"students", "scores": {activity or "total": {"max", "points": [per student], "mean",
        "median"}}, "cells": [{"notebook", "grade_id", "max_score", "pass_rate", "failures":
        [{"test", "students", "message"}]}], "seconds": {student: s}, "listed": {what: [{"student",
        "problems", "feedback"}]}, "hints": {grade_id: count}, "warnings"}``.
    """
    points: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    maxima: dict[str, dict[str, float]] = defaultdict(dict)
    for row in data.cells:
        points[row["student_id"]][activity_of(row["grade_id"])] += row["score"]
        maxima[activity_of(row["grade_id"])][(row["notebook"], row["grade_id"])] = row["max_score"]
    activities = sorted(maxima)
    scores = {}
    for name in [*activities, "total"]:
        top = sum(sum(m.values()) for m in maxima.values()) if name == "total" else sum(maxima[name].values())
        per_student = [round(sum(points[s].values()) if name == "total" else points[s][name], 3) for s in data.students]
        scores[name] = {
            "max": top,
            "points": per_student,
            "mean": round(statistics.fmean(per_student), 3) if per_student else 0.0,
            "median": statistics.median(per_student) if per_student else 0.0,
        }

    failures: dict[tuple[str, str], Counter] = defaultdict(Counter)
    examples: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    for report in data.reports.values():
        for outcome in report.outcomes:
            if outcome.passed:
                continue
            test = outcome.site or outcome.ename or "error"
            failures[(outcome.notebook, outcome.cell)][test] += 1
            examples[(outcome.notebook, outcome.cell, test)][outcome.message or ""] += 1
    cells = []
    by_cell: dict[tuple[str, str], list[dict]] = defaultdict(list)  # the autograded rows of each cell
    for row in data.cells:
        if row["kind"] == "autograded":
            by_cell[(row["notebook"], row["grade_id"])].append(row)
    for (notebook, grade_id), rows in sorted(by_cell.items()):
        passed = sum(r["score"] >= r["max_score"] > 0 for r in rows)
        groups = failures.get((f"{notebook}.ipynb", grade_id), Counter())
        cells.append(
            {
                "notebook": notebook,
                "grade_id": grade_id,
                "max_score": rows[0]["max_score"],
                "pass_rate": round(passed / len(rows), 4),
                "failures": [
                    {
                        "test": test,
                        "students": n,
                        "message": examples[(f"{notebook}.ipynb", grade_id, test)].most_common(1)[0][0],
                    }
                    for test, n in groups.most_common(TOP_FAILURES)
                ],
            }
        )

    listed: dict[str, list[dict]] = {}
    for what, kinds in LISTED.items():
        entries = []
        for student, report in sorted(data.reports.items()):
            problems = [p.message for p in report.problems if p.kind in kinds]
            if problems:
                entries.append({"student": student, "problems": problems})
        listed[what] = entries
    hints = Counter(cell for report in data.reports.values() for cell in report.hints)
    return {
        "assignment": data.assignment,
        "students": data.students,
        "scores": scores,
        "cells": cells,
        "seconds": {s: round(r.seconds, 2) for s, r in sorted(data.reports.items())},
        "listed": listed,
        "hints": dict(sorted(hints.items())),
        "warnings": data.warnings,
    }


def _plots(summary: dict, dest: Path) -> dict[str, str]:
    """The PNGs of the page, written into ``dest``: name -> file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = {}
    names = list(summary["scores"])
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        score = summary["scores"][name]
        top = score["max"] or 1.0
        ax.hist(score["points"], bins=min(20, max(5, int(top) + 1)), range=(0, top), color="#4878a8")
        ax.set_title(f"{name} (of {score['max']:g})", fontsize=10)
        ax.set_xlabel("points")
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes[0][0].set_ylabel("students")
    fig.tight_layout()
    fig.savefig(dest / "scores.png", dpi=90)
    plt.close(fig)
    written["scores"] = "scores.png"

    cells = summary["cells"]
    if cells:
        fig, ax = plt.subplots(figsize=(7, 0.28 * len(cells) + 1))
        labels = [c["grade_id"] for c in cells]
        ax.barh(labels, [100 * c["pass_rate"] for c in cells], color="#59a14f")
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("students who pass (%)")
        ax.tick_params(axis="y", labelsize=8)
        fig.tight_layout()
        fig.savefig(dest / "pass_rate.png", dpi=90)
        plt.close(fig)
        written["pass_rate"] = "pass_rate.png"

    seconds = list(summary["seconds"].values())
    if seconds:
        fig, ax = plt.subplots(figsize=(6, 2.6))
        ax.hist(seconds, bins=min(30, max(5, len(seconds) // 5)), color="#e15759")
        ax.set_xlabel("seconds to grade one submission")
        ax.set_ylabel("submissions")
        fig.tight_layout()
        fig.savefig(dest / "grading_time.png", dpi=90)
        plt.close(fig)
        written["grading_time"] = "grading_time.png"
    return written


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;
vertical-align:top;text-align:left}th{background:#f3f3f3}td.n{text-align:right}pre{margin:0;font-size:85%;
white-space:pre-wrap;max-width:34em}img{max-width:100%}.warn{color:#a33}"""


def _feedback_links(out: Path, dest: Path, student: str) -> str:
    """Links from the page to a student's feedback pages (``<out>/feedback/<student>/*.html``)."""
    pages = sorted((out / "feedback" / student).glob("*.html"))
    links = [f"<a href='{html.escape(os.path.relpath(page, dest))}'>{html.escape(page.stem)}</a>" for page in pages]
    return ", ".join(links) or "no feedback"


def render(summary: dict, data: ClassData, out: Path, dest: Path, plots: dict[str, str]) -> str:
    """The HTML page (every student-controlled text escaped)."""
    e = html.escape
    n = len(summary["students"])
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(summary['assignment'])}: class report</title>",
        f"<style>{_STYLE}</style></head><body><h1>{e(summary['assignment'])}: class report</h1>",
        f"<p>{n} students. Points per activity (autograded and manual cells), mean and median:</p>",
        "<table><tr><th>activity</th><th>max</th><th>mean</th><th>median</th></tr>",
    ]
    for name, score in summary["scores"].items():
        parts.append(
            f"<tr><td>{e(name)}</td><td class=n>{score['max']:g}</td><td class=n>{score['mean']:.2f}</td>"
            f"<td class=n>{score['median']:g}</td></tr>"
        )
    parts.append("</table>")
    if "scores" in plots:
        parts.append(f"<img src='{plots['scores']}' alt='score histograms per activity and in total'>")
    parts.append("<h2>Graded cells</h2>")
    if "pass_rate" in plots:
        parts.append(f"<img src='{plots['pass_rate']}' alt='pass rate per graded cell'>")
    parts.append(
        "<table><tr><th>notebook</th><th>cell</th><th>pass rate</th><th>most frequent failures "
        "(students: one of their messages)</th></tr>"
    )
    for cell in summary["cells"]:
        failures = "".join(f"<li><b>{f['students']}</b>: {e(f['message'] or f['test'])}</li>" for f in cell["failures"])
        hints = summary["hints"].get(cell["grade_id"])
        note = f"<br><i>{hints} feedback hint(s) given</i>" if hints else ""
        parts.append(
            f"<tr><td>{e(cell['notebook'])}</td><td>{e(cell['grade_id'])}</td>"
            f"<td class=n>{100 * cell['pass_rate']:.0f}%</td><td><ul>{failures}</ul>{note}</td></tr>"
        )
    parts.append("</table><h2>Grading time</h2>")
    seconds = summary["seconds"]
    if seconds:
        values = sorted(seconds.values())
        parts.append(
            f"<p>{len(values)} submissions; median {statistics.median(values):.1f} s, slowest {values[-1]:.1f} s.</p>"
        )
        if "grading_time" in plots:
            parts.append(f"<img src='{plots['grading_time']}' alt='grading time per submission'>")
        slowest = sorted(seconds.items(), key=lambda kv: -kv[1])[:10]
        parts.append("<table><tr><th>slowest submissions</th><th>seconds</th></tr>")
        parts += [f"<tr><td>{e(s)}</td><td class=n>{t:.1f}</td></tr>" for s, t in slowest]
        parts.append("</table>")
    parts.append("<h2>Submissions to look at</h2>")
    for what, entries in summary["listed"].items():
        parts.append(f"<h3>{e(what)} ({len(entries)})</h3>")
        if not entries:
            parts.append("<p>none</p>")
            continue
        parts.append("<table><tr><th>student</th><th>what happened</th><th>feedback</th></tr>")
        for entry in entries:
            problems = "<br>".join(e(p) for p in entry["problems"])
            links = _feedback_links(out, dest, entry["student"])
            parts.append(f"<tr><td>{e(entry['student'])}</td><td>{problems}</td><td>{links}</td></tr>")
        parts.append("</table>")
    if data.similarity is not None:
        pairs = data.similarity.get("pairs", [])
        parts.append(
            f"<h2>Similar answers ({len(pairs)} pairs above {data.similarity.get('threshold', '?')})</h2>"
            "<p>For review, not a verdict: independent answers to a short task can be alike.</p>"
        )
        if len(pairs) > SIMILAR_SHOWN:
            parts.append(f"<p>The {SIMILAR_SHOWN} most similar are shown; all are in similarity.json.</p>")
        for pair in pairs[:SIMILAR_SHOWN]:
            parts.append(f"<h3>{e(pair['a'])} and {e(pair['b'])}: {pair['score']:.2f}</h3><table>")
            parts.append(f"<tr><th>cell</th><th>{e(pair['a'])}</th><th>{e(pair['b'])}</th></tr>")
            for cell in pair.get("cells", []):
                parts.append(
                    f"<tr><td>{e(cell['notebook'])}<br>{e(cell['cell'])}<br>{cell['score']:.2f}</td>"
                    f"<td><pre>{e(cell['answer_a'])}</pre></td><td><pre>{e(cell['answer_b'])}</pre></td></tr>"
                )
            parts.append("</table>")
    if summary["warnings"]:
        parts.append("<h2>Warnings</h2><ul>")
        parts += [f"<li class=warn>{e(w)}</li>" for w in summary["warnings"]]
        parts.append("</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_class_report(
    assignment: str,
    out: Path,
    dest: Path | None = None,
    gradebooks: dict[str, list[str]] | None = None,
    url: str | None = None,
    runs: tuple[Path, ...] = (),
) -> Path:
    """Write ``index.html``, ``report.json`` and the PNGs of the class report into ``dest``
    (default ``<out>/report``); returns the page's path.

    Arguments as in :func:`gather`.

    Raises:
        PipelineError: if there is no gradebook to read.
    """
    out = Path(out).resolve()
    dest = Path(dest).resolve() if dest is not None else out / "report"
    dest.mkdir(parents=True, exist_ok=True)
    data = gather(assignment, out, gradebooks, url, runs)
    summary = summarize(data)
    summary["gradebook"] = redact(url) if url else "sqlite"
    (dest / "report.json").write_text(json.dumps(summary, indent=1))
    page = dest / "index.html"
    page.write_text(render(summary, data, out, dest, _plots(summary, dest)))
    return page
