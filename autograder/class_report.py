"""``course report``: one HTML page, with PNG plots, that says how a class did on an assignment.

Read from the gradebook and from what the grader saw of each submission (``<out>/course/results/<student>.json``,
:func:`autograder.report.save_report`); ``docs/instructors.md`` ("The class report") lists what the page shows.
``course autograde`` writes it at the end and ``course watch`` after each submission it grades. Every text a
student controls (ids, messages, answers) is escaped with :func:`html.escape` where it is rendered.
"""

from __future__ import annotations

import ast
import datetime as dt
import html
import json
import os
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder.course import source_dir
from autograder.deadlines import Standing, format_duration, format_utc, standings
from autograder.gradebook import graded_students, read_gradebook, read_index, redact, sources
from autograder.hints import HIDDEN_TESTS, decided_by
from autograder.lms import points
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
#: The score the report adds up over the manually graded cells (written answers).
MANUAL = "manual"
#: The score after the late penalty: what grades.csv, the Canvas and the Moodle files hold.
TOTAL = "total"


@dataclass(frozen=True)
class GradedTest:
    """A graded test cell of the source notebooks: what it checks and its visible code.

    Attributes:
        description: the first line of its docstring (``Check that ...``), or ``""``.
        lines: its visible code's lines (above the hidden tests), for the assert that failed.
    """

    description: str
    lines: tuple[str, ...]


def graded_tests(assignment: str) -> dict[tuple[str, str], GradedTest]:
    """``{(notebook file name, grade_id): GradedTest}`` for every graded code cell of the assignment's
    source notebooks (empty if the sources cannot be read)."""
    cells = {}
    try:
        paths = sorted(source_dir(assignment).glob("*.ipynb"))
    except Exception:  # an assignment only the gradebook knows: no descriptions
        return {}
    for path in paths:
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.cell_type != "code" or not meta.get("grade"):
                continue
            visible = cell.source.partition(HIDDEN_TESTS)[0]
            try:
                docstring = ast.get_docstring(ast.parse(visible)) or ""
            except SyntaxError:
                docstring = ""
            description = docstring.strip().split("\n")[0]
            cells[path.name, meta["grade_id"]] = GradedTest(description, tuple(visible.splitlines()))
    return cells


@dataclass
class ClassData:
    """Everything the report shows, gathered once.

    Attributes:
        assignment: the assignment's name.
        cells: rows of ``cells.csv`` for every student (:func:`autograder.gradebook.read_gradebook`).
        grades: rows of ``grades.csv`` for every student (scores before the late penalty, and the penalty).
        reports: what the grader saw of each submission, by student id (those with a saved report).
        standings: each submission's timestamp, lateness and extension, by student id (those the
            gradebook holds a submission of).
        due: the assignment's due date (naive UTC), if the gradebook has one.
        runs: the output folders read (``out`` and the other machines' ``runs``), for the feedback.
        tests: what each graded test cell checks (:func:`graded_tests`).
        similarity: the content of ``similarity.json``, if there is one.
        warnings: files that could not be read, by name, and students the gradebook holds without a
            saved report.
    """

    assignment: str
    cells: list[dict]
    reports: dict[str, StudentReport]
    grades: list[dict] = field(default_factory=list)
    standings: dict[str, Standing] = field(default_factory=dict)
    due: dt.datetime | None = None
    runs: tuple[Path, ...] = ()
    tests: dict[tuple[str, str], GradedTest] = field(default_factory=dict)
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
    """Read the grades, the lateness and the saved reports of a graded class.

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
        opened = [(url, graded_students(assignment, url))]
    else:
        opened = sources(root, read_index(root) if gradebooks is None else gradebooks)
    grades, rows, held, due = [], [], {}, None
    for url_, students in opened:
        g, c = read_gradebook(assignment, url_, students)
        grades += g
        rows += c
        book_due, book = standings(assignment, url_)
        due = due or book_due
        held.update({s: book[s] for s in students if s in book})  # the book that graded them
    data = ClassData(
        assignment,
        sorted(rows, key=lambda r: (r["student_id"], r["notebook"], r["grade_id"])),
        {},
        grades=sorted(grades, key=lambda r: (r["student_id"], r["notebook"])),
        standings=held,
        due=due,
        runs=(out, *(Path(r) for r in runs)),
        tests=graded_tests(assignment),
    )
    for run in data.runs:
        for path in sorted((run / "course" / RESULTS_DIR).glob("*.json")):
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


def _stats(values: list[float], top: float) -> dict:
    return {
        "max": top,
        "points": values,
        "mean": round(statistics.fmean(values), 3) if values else 0.0,
        "median": statistics.median(values) if values else 0.0,
    }


def student_rows(data: ClassData) -> list[dict]:
    """One row per student: ``{"student", "submitted", "autograded", "manual", "manual_pending",
    "score", "penalty", "total", "seconds_late", "days_late", "extension_hours", "flags"}``.

    ``score`` is the gradebook's (nbgrader's ``SubmittedAssignment.score``: autograded plus manual
    points), ``total`` is ``score - penalty``, never below 0, as ``grades.csv``, ``course export
    --format canvas`` and ``moodle`` give it; manual cells not graded yet count 0 and are counted in
    ``manual_pending``.
    """
    auto: dict[str, float] = defaultdict(float)
    manual: dict[str, float] = defaultdict(float)
    pending: dict[str, int] = defaultdict(int)
    for row in data.cells:
        if row["kind"] == "autograded":
            auto[row["student_id"]] += row["score"]
        else:
            manual[row["student_id"]] += row["score"]
            pending[row["student_id"]] += bool(row["needs_manual_grade"])
    score: dict[str, float] = defaultdict(float)
    penalty: dict[str, float] = defaultdict(float)
    for row in data.grades:
        score[row["student_id"]] += row["score"]
        penalty[row["student_id"]] += row["late_penalty"]
    rows = []
    for student in data.students:
        standing = data.standings.get(student)
        report = data.reports.get(student)
        kinds = {p.kind for p in report.problems} if report else set()
        flags = [what for what, listed in LISTED.items() if kinds & set(listed)]
        rows.append(
            {
                "student": student,
                "submitted": standing is not None,
                "autograded": round(auto[student], 3),
                "manual": round(manual[student], 3),
                "manual_pending": pending[student] if standing is not None else 0,
                "score": round(score[student], 3),
                "penalty": round(penalty[student], 3),
                "total": round(max(score[student] - penalty[student], 0.0), 3),
                "seconds_late": standing.seconds_late if standing else 0.0,
                "days_late": standing.days_late if standing else 0,
                "extension_hours": round(standing.extension.total_seconds() / 3600, 2)
                if standing and standing.extension
                else 0.0,
                "flags": flags,
            }
        )
    return rows


def lateness_summary(data: ClassData, rows: list[dict]) -> dict:
    """How many submissions were late, by how much, what it cost, and how many extensions were granted."""
    submitted = [r for r in rows if r["submitted"]]
    late = [r for r in submitted if r["seconds_late"] > 0]
    stamped = [s for s in data.standings.values() if s.submitted is not None]
    seconds = sorted(r["seconds_late"] for r in late)
    return {
        "due": format_utc(data.due) if data.due else None,
        "submissions": len(submitted),
        "with_timestamp": len(stamped),
        "late": len(late),
        "median_seconds_late": statistics.median(seconds) if seconds else 0.0,
        "max_seconds_late": seconds[-1] if seconds else 0.0,
        "penalised": sum(r["penalty"] > 0 for r in rows),
        "penalty_points": round(sum(r["penalty"] for r in rows), 3),
        "extensions": sum(r["extension_hours"] > 0 for r in rows),
    }


def _failure(data: ClassData, notebook: str, grade_id: str, outcome) -> dict:
    """What the report says of one failure group: the test's description, the visible assert that
    failed (when a visible test decided) and the message."""
    test = data.tests.get((notebook, grade_id))
    line = None
    if outcome.site and outcome.ename != "CheckFailed" and test is not None:  # a visible test's line
        number = int(outcome.site.rpartition(":")[2])
        line = test.lines[number - 1].strip() if 0 < number <= len(test.lines) else None
    message = outcome.message or ""
    if outcome.ename and outcome.ename != "CheckFailed":
        message = f"{outcome.ename}: {message}" if message else outcome.ename
    return {"check": test.description if test else "", "assertion": line, "message": message}


def summarize(data: ClassData) -> dict:
    """The report's numbers (what ``report.json`` holds).

    Returns:
        ``{"students", "per_student": [student_rows], "scores": {activity, "manual" or "total":
        {"max", "points": [per student], "mean", "median"}}, "manual": {"points", "cells",
        "submissions", "graded", "pending"}, "lateness": lateness_summary, "cells": [{"notebook",
        "grade_id", "max_score", "pass_rate", "failures": [{"test", "students", "check", "assertion",
        "message"}]}], "seconds": {student: s}, "listed": {what: [{"student", "problems"}]}, "hints":
        {grade_id: count}, "warnings"}``. Activities count autograded cells only; ``total`` is after
        the late penalty (:func:`student_rows`). A cell's failures are grouped by the test that decided
        (:func:`autograder.hints.decided_by`), never by matching message texts.
    """
    points: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    maxima: dict[str, dict[str, float]] = defaultdict(dict)
    manual_cells: dict[tuple[str, str], float] = {}
    for row in data.cells:
        if row["kind"] == "autograded":
            points[row["student_id"]][activity_of(row["grade_id"])] += row["score"]
            maxima[activity_of(row["grade_id"])][(row["notebook"], row["grade_id"])] = row["max_score"]
        else:
            manual_cells[(row["notebook"], row["grade_id"])] = row["max_score"]
    rows = student_rows(data)
    scores = {
        name: _stats([round(points[s][name], 3) for s in data.students], sum(maxima[name].values()))
        for name in sorted(maxima)
    }
    if manual_cells:
        scores[MANUAL] = _stats([r["manual"] for r in rows], sum(manual_cells.values()))
    top = sum(sum(m.values()) for m in maxima.values()) + sum(manual_cells.values())
    scores[TOTAL] = _stats([r["total"] for r in rows], top)
    submitted = [r for r in rows if r["submitted"]]
    manual = {
        "points": sum(manual_cells.values()),
        "cells": len(manual_cells),
        "submissions": len(submitted),
        "graded": sum(r["manual_pending"] == 0 for r in submitted),
        "pending": [r["student"] for r in submitted if r["manual_pending"]],
    }

    failures: dict[tuple[str, str], Counter] = defaultdict(Counter)
    examples: dict[tuple[str, str, str], list] = {}
    for report in data.reports.values():
        for outcome in report.outcomes:
            if outcome.passed:
                continue
            test = decided_by(outcome)
            failures[(outcome.notebook, outcome.cell)][test] += 1
            examples.setdefault((outcome.notebook, outcome.cell, test), []).append(outcome)
    cells = []
    by_cell: dict[tuple[str, str], list[dict]] = defaultdict(list)  # the autograded rows of each cell
    for row in data.cells:
        if row["kind"] == "autograded":
            by_cell[(row["notebook"], row["grade_id"])].append(row)
    for (notebook, grade_id), cell_rows in sorted(by_cell.items()):
        passed = sum(r["score"] >= r["max_score"] > 0 for r in cell_rows)
        groups = failures.get((f"{notebook}.ipynb", grade_id), Counter())
        shown = []
        for test, n in groups.most_common(TOP_FAILURES):
            outcomes = examples[(f"{notebook}.ipynb", grade_id, test)]
            message = Counter(o.message or "" for o in outcomes).most_common(1)[0][0]
            example = next(o for o in outcomes if (o.message or "") == message)
            shown.append({"test": test, "students": n, **_failure(data, f"{notebook}.ipynb", grade_id, example)})
        cells.append(
            {
                "notebook": notebook,
                "grade_id": grade_id,
                "max_score": cell_rows[0]["max_score"],
                "pass_rate": round(passed / len(cell_rows), 4),
                "failures": shown,
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
        "per_student": rows,
        "scores": scores,
        "manual": manual,
        "lateness": lateness_summary(data, rows),
        "cells": cells,
        "seconds": {s: round(r.seconds, 2) for s, r in sorted(data.reports.items())},
        "listed": listed,
        "hints": dict(sorted(hints.items())),
        "warnings": data.warnings,
    }


def _bins(top: float) -> list[float] | int:
    """Histogram bins one point wide, centred on whole points (at most 60 of them)."""
    if 0 < top <= 60:
        return [k - 0.5 for k in range(int(top) + 2)]
    return 20


def score_histograms(summary: dict):
    """The histograms of the points, per activity, manual and in total (a matplotlib Figure): bins one
    point wide centred on whole points, ticks at whole points and whole students."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = list(summary["scores"])
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        score = summary["scores"][name]
        top = score["max"] or 1.0
        ax.hist(score["points"], bins=_bins(top), color="#4878a8")
        ax.set_xlim(-0.5, top + 0.5)
        label = "total after late penalties" if name == TOTAL else name
        ax.set_title(f"{label} (of {score['max']:g})", fontsize=10)
        ax.set_xlabel("points")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes[0][0].set_ylabel("students")
    fig.tight_layout()
    return fig


def _plots(summary: dict, dest: Path) -> dict[str, str]:
    """The PNGs of the page, written into ``dest``: name -> file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    written = {}
    fig = score_histograms(summary)
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
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.tight_layout()
        fig.savefig(dest / "grading_time.png", dpi=90)
        plt.close(fig)
        written["grading_time"] = "grading_time.png"
    return written


STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:76em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;
vertical-align:top;text-align:left}th{background:#f3f3f3}td.n{text-align:right}pre{margin:0;font-size:85%;
white-space:pre-wrap;max-width:34em}img{max-width:100%}.warn{color:#a33}.late{color:#a33}
th button{font:inherit;font-weight:bold;background:none;border:0;padding:0;cursor:pointer}
th[aria-sort=ascending] button::after{content:" \\25B2"}th[aria-sort=descending] button::after{content:" \\25BC"}
pre mark{background:#fde49c}"""

#: Sorts a ``table.sortable`` by the column whose header button is clicked (again: the other way).
#: Each cell's ``data-v`` is its sort key; ``th[data-type=num]`` columns sort as numbers.
SORT_SCRIPT = """<script>
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th button").forEach(function (button) {
    button.addEventListener("click", function () {
      var th = button.parentNode, col = th.cellIndex, num = th.dataset.type === "num";
      var asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var key = function (row) {
        var v = row.cells[col].dataset.v;
        if (!num) return v;
        var x = parseFloat(v);
        return isNaN(x) ? -Infinity : x;
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), d = num ? (x > y) - (x < y) : x.localeCompare(y);
        return asc ? d : -d;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
</script>"""


def sortable_table(table_id: str, headers: list[tuple[str, bool]], rows: list[list[tuple[str, str | float]]]) -> str:
    """An HTML table that sorts by any column (:data:`SORT_SCRIPT`).

    Args:
        table_id: the table's ``id``.
        headers: ``(label, numeric)`` per column; labels are escaped here.
        rows: per row, ``(cell HTML, sort key)`` per column; the cell HTML must already be escaped.
    """
    e = html.escape
    head = "".join(
        f"<th{' data-type=num' if numeric else ''}><button type=button>{e(label)}</button></th>"
        for label, numeric in headers
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=n' if numeric else ''} data-v='{e(str(key))}'>{cell}</td>"
            for (cell, key), (_, numeric) in zip(row, headers, strict=True)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table id='{e(table_id)}' class=sortable><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def feedback_links(runs: tuple[Path, ...], dest: Path, student: str) -> str:
    """Links from the page to a student's feedback pages (``<run>/feedback/<student>/*.html`` of the
    first run folder that has them)."""
    for run in runs:
        pages = sorted((Path(run) / "feedback" / student).glob("*.html"))
        if pages:
            return ", ".join(
                f"<a href='{html.escape(os.path.relpath(page, dest))}'>{html.escape(page.stem)}</a>" for page in pages
            )
    return "no feedback"


def _student_table(summary: dict, data: ClassData, dest: Path) -> str:
    """Every student, sortable: autograded, manual, lateness, penalty, total, flags, feedback."""
    e = html.escape
    scores = summary["scores"]
    auto_max = sum(s["max"] for name, s in scores.items() if name not in (MANUAL, TOTAL))
    headers = [
        ("student", False),
        (f"autograded (of {auto_max:g})", True),
        (f"manual (of {summary['manual']['points']:g})", True),
        ("late by", True),
        ("extension", True),
        ("late penalty", True),
        (f"total (of {scores[TOTAL]['max']:g})", True),
        ("flags", False),
        ("feedback", False),
    ]
    rows = []
    for r in summary["per_student"]:
        if not r["submitted"]:
            manual = ("no submission", -1)
        elif r["manual_pending"]:
            manual = (f"{points(r['manual'])} ({r['manual_pending']} cell(s) not graded yet)", r["manual"])
        else:
            manual = (points(r["manual"]), r["manual"])
        late = f"<span class=late>{e(format_duration(r['seconds_late']))}</span>" if r["seconds_late"] > 0 else ""
        extension = f"{r['extension_hours']:g} h" if r["extension_hours"] else ""
        rows.append(
            [
                (e(r["student"]), r["student"]),
                (points(r["autograded"]), r["autograded"]),
                (e(manual[0]), manual[1]),
                (late or ("on time" if r["submitted"] and data.due else ""), r["seconds_late"]),
                (extension, r["extension_hours"]),
                (f"-{points(r['penalty'])}" if r["penalty"] else "", r["penalty"]),
                (f"<b>{points(r['total'])}</b>", r["total"]),
                (e(", ".join(r["flags"])), ", ".join(r["flags"])),
                (feedback_links(data.runs, dest, r["student"]), ""),
            ]
        )
    return sortable_table("students", headers, rows)


def _lateness_text(lateness: dict) -> str:
    if lateness["due"] is None:
        return "No due date in the gradebook: no submission is late (course release --due or --due sets one)."
    text = (
        f"Due {lateness['due']}. {lateness['late']} of {lateness['submissions']} submissions late"
        + (
            f" (median {format_duration(lateness['median_seconds_late'])}, "
            f"latest {format_duration(lateness['max_seconds_late'])})"
            if lateness["late"]
            else ""
        )
        + f"; {lateness['penalised']} penalised, {points(lateness['penalty_points'])} points in all; "
        f"{lateness['extensions']} extension(s) granted."
    )
    if lateness["with_timestamp"] < lateness["submissions"]:
        text += (
            f" {lateness['submissions'] - lateness['with_timestamp']} submission(s) carry no timestamp "
            "(an LMS zip or a folder of notebooks) and count as on time."
        )
    return text


def _failure_html(failure: dict) -> str:
    e = html.escape
    parts = [f"<b>{failure['students']}</b>:"]
    if failure["check"]:
        parts.append(f"<i>{e(failure['check'])}</i>")
    if failure["assertion"]:
        parts.append(f"failed at <code>{e(failure['assertion'])}</code>")
    if failure["message"]:
        parts.append(f"&mdash; {e(failure['message'])}")
    return " ".join(parts)


def highlighted(text: str, lines: list[list[int]] | None) -> str:
    """``text`` escaped, the lines in the ``[first, last]`` ranges (1-based) marked."""
    marked = {n for first, last in lines or [] for n in range(first, last + 1)}
    return "\n".join(
        f"<mark>{html.escape(line)}</mark>" if n in marked else html.escape(line)
        for n, line in enumerate(text.split("\n"), start=1)
    )


def render(summary: dict, data: ClassData, out: Path, dest: Path, plots: dict[str, str]) -> str:
    """The HTML page (every student-controlled text escaped)."""
    e = html.escape
    n = len(summary["students"])
    manual = summary["manual"]
    total = summary["scores"][TOTAL]
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(summary['assignment'])}: class report</title>",
        f"<style>{STYLE}</style></head><body><h1>{e(summary['assignment'])}: class report</h1>",
        f"<p>{n} students. Total after late penalties, as grades.csv and the LMS files have it: mean "
        f"{total['mean']:.2f}, median {total['median']:g} of {total['max']:g}.</p>",
        f"<p id=manual>Manual: {manual['points']:g} points in {manual['cells']} written answer(s), "
        f"{manual['graded']} of {manual['submissions']} students graded yet (formgrader; then "
        "<code>course feedback</code> and <code>course export</code> again).</p>"
        if manual["cells"]
        else "<p id=manual>No cell is graded by hand.</p>",
        f"<p id=lateness>{e(_lateness_text(summary['lateness']))}</p>",
        "<table><tr><th>points</th><th>max</th><th>mean</th><th>median</th></tr>",
    ]
    for name, score in summary["scores"].items():
        labels = {MANUAL: "manual (graded so far)", TOTAL: "total after late penalties"}
        label = labels.get(name, f"{name} (autograded)")
        parts.append(
            f"<tr><td>{e(label)}</td><td class=n>{score['max']:g}</td><td class=n>{score['mean']:.2f}</td>"
            f"<td class=n>{score['median']:g}</td></tr>"
        )
    parts.append("</table>")
    if "scores" in plots:
        parts.append(f"<img src='{plots['scores']}' alt='score histograms per activity and in total'>")
    parts.append("<h2>Students</h2><p>Click a column's title to sort by it.</p>")
    parts.append(_student_table(summary, data, dest))
    parts.append("<h2>Graded cells</h2>")
    if "pass_rate" in plots:
        parts.append(f"<img src='{plots['pass_rate']}' alt='pass rate per graded cell'>")
    parts.append(
        "<table><tr><th>notebook</th><th>cell</th><th>pass rate</th><th>most frequent failures "
        "(students: what the test checks, where it failed, one of their messages)</th></tr>"
    )
    for cell in summary["cells"]:
        failures = "".join(f"<li>{_failure_html(f)}</li>" for f in cell["failures"])
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
            links = feedback_links(data.runs, dest, entry["student"])
            parts.append(f"<tr><td>{e(entry['student'])}</td><td>{problems}</td><td>{links}</td></tr>")
        parts.append("</table>")
    if data.similarity is not None:
        parts.append(similarity_section(data.similarity))
    if summary["warnings"]:
        parts.append("<h2>Warnings</h2><ul>")
        parts += [f"<li class=warn>{e(w)}</li>" for w in summary["warnings"]]
        parts.append("</ul>")
    parts.append(SORT_SCRIPT)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def similarity_section(similarity: dict) -> str:
    """The similar pairs side by side, the statements the two answers share marked (``matched_a``,
    ``matched_b`` of each cell, :func:`autograder.similarity.similar_pairs`)."""
    e = html.escape
    pairs = similarity.get("pairs", [])
    against = similarity.get("against") or []
    parts = [
        f"<h2>Similar answers ({len(pairs)} pairs above {e(str(similarity.get('threshold', '?')))})</h2>"
        "<p>For review, not a verdict: independent answers to a short task can be alike. Marked lines are "
        "the statements the two answers share.</p>"
    ]
    if against:
        parts.append(f"<p>Also compared with earlier terms: {e(', '.join(against))}.</p>")
    if len(pairs) > SIMILAR_SHOWN:
        parts.append(f"<p>The {SIMILAR_SHOWN} most similar are shown; all are in similarity.json.</p>")
    for pair in pairs[:SIMILAR_SHOWN]:
        parts.append(f"<h3>{e(pair['a'])} and {e(pair['b'])}: {pair['score']:.2f}</h3><table>")
        parts.append(f"<tr><th>cell</th><th>{e(pair['a'])}</th><th>{e(pair['b'])}</th></tr>")
        for cell in pair.get("cells", []):
            parts.append(
                f"<tr><td>{e(cell['notebook'])}<br>{e(cell['cell'])}<br>{cell['score']:.2f}</td>"
                f"<td><pre>{highlighted(cell['answer_a'], cell.get('matched_a'))}</pre></td>"
                f"<td><pre>{highlighted(cell['answer_b'], cell.get('matched_b'))}</pre></td></tr>"
            )
        parts.append("</table>")
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
    data = gather(assignment, out, gradebooks, url, tuple(Path(r).resolve() for r in runs))
    summary = summarize(data)
    summary["gradebook"] = redact(url) if url else "sqlite"
    (dest / "report.json").write_text(json.dumps(summary, indent=1))
    page = dest / "index.html"
    page.write_text(render(summary, data, out, dest, _plots(summary, dest)))
    return page
