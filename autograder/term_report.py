"""``course report --term``: the instructor's view of a whole term, one page and one CSV over every
assignment that the course's gradebooks hold.

Students by assignments, each cell the assignment's total after its late penalty, as ``grades.csv`` and the
LMS files have it (:func:`autograder.class_report.student_rows`); then each student's term total, late
days, extensions and flagged submissions. ``docs/instructors.md`` ("The term: every assignment at once")
shows the command.
"""

from __future__ import annotations

import csv
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from autograder.class_report import LISTED, SORT_SCRIPT, STYLE, ClassData, sortable_table, student_rows
from autograder.course import COURSE_ID, PipelineError
from autograder.deadlines import format_duration, format_utc, standings
from autograder.gradebook import INDEX, db_url, read_gradebook, redact
from autograder.lms import points
from autograder.report import RESULTS_DIR, load_report


@dataclass
class Held:
    """One submission as one gradebook holds it.

    Attributes:
        book: the gradebook, as the page names it (a sqlite file of a run folder, or a server URL
            without its password).
        rank: 0 if the run's index names the student in this gradebook (or it is the shared server),
            1 otherwise.
        autograded: whether it was autograded there.
        row: its row of :func:`autograder.class_report.student_rows`.
        max_score: the assignment's points possible.
        run: the run folder whose saved reports tell its flags (``None``: none known).
        order: how it ranks against other copies of the same submission (lowest kept).
    """

    book: str
    rank: int
    autograded: bool
    row: dict
    max_score: float
    run: Path | None
    order: tuple = ()


@dataclass
class Term:
    """What the term view shows.

    Attributes:
        assignments: the assignments, sorted by name, with their points possible, due date and counts.
        students: student -> assignment -> the :class:`Held` submission chosen.
        sources: the gradebooks read.
        warnings: what could not be read or was ambiguous.
    """

    assignments: dict[str, dict] = field(default_factory=dict)
    students: dict[str, dict[str, Held]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _assignments_in(url: str) -> list[str]:
    """The names of the course's assignments the gradebook at ``url`` holds submissions of."""
    from nbgrader.api import Assignment, Gradebook, SubmittedAssignment

    with Gradebook(url, COURSE_ID) as gb:
        names = (
            gb.db.query(Assignment.name)
            .join(SubmittedAssignment, SubmittedAssignment.assignment_id == Assignment.id)
            .filter(Assignment.course_id == COURSE_ID)
            .distinct()
        )
        return sorted(name for (name,) in names)


def _read_book(term: Term, url: str, label: str, indexed: set[str] | None, run: Path | None) -> None:
    """Add every submission the gradebook at ``url`` holds to ``term`` (``indexed``: the students
    the run's index names in it; ``None``: all, for the shared server)."""
    for assignment in _assignments_in(url):
        due, held = standings(assignment, url)
        students = sorted(held)
        grades, cells = read_gradebook(assignment, url, students)
        rows = student_rows(ClassData(assignment, cells, {}, grades=grades, standings=held))
        max_score = sum(g["max_score"] for g in grades if g["student_id"] == students[0]) if students else 0.0
        info = term.assignments.setdefault(assignment, {"max": max_score, "due": due})
        if info["max"] != max_score and students:
            term.warnings.append(f"{label} gives {assignment} {max_score:g} points, another gradebook {info['max']:g}")
        info["due"] = info["due"] or due
        for row in rows:
            student, standing = row["student"], held[row["student"]]
            rank = 0 if indexed is None or student in indexed else 1
            if rank and not standing.autograded:  # only the empty submission an extension enters
                row["submitted"] = False
            stamp = standing.submitted.timestamp() if standing.submitted else 0.0
            order = (rank, not standing.autograded, -stamp)
            _choose(term, assignment, Held(label, rank, standing.autograded, row, max_score, run, order))


def _choose(term: Term, assignment: str, candidate: Held) -> None:
    """Keep ``candidate`` for its student and ``assignment`` if it ranks before the copy kept (as
    :func:`gather_term` says); two autograded copies that the indexes both name are reported."""
    student = candidate.row["student"]
    kept = term.students.setdefault(student, {}).get(assignment)
    if kept is not None and kept.rank == candidate.rank == 0 and kept.autograded and candidate.autograded:
        term.warnings.append(
            f"{student}'s {assignment} is autograded in two gradebooks ({kept.book}, {candidate.book}); "
            "the later submission is shown"
        )
    if kept is None or candidate.order < kept.order:
        term.students[student][assignment] = candidate


def _flag(term: Term) -> None:
    """Each kept submission's flags, from the saved grading reports of its run folder."""
    reports: dict[Path, dict] = {}
    for student, by_assignment in term.students.items():
        for assignment, held in by_assignment.items():
            if held.run is None or assignment not in (_run_assignments(held.run) or {assignment}):
                continue  # a run folder's saved reports are those of the assignment it graded
            if held.run not in reports:
                reports[held.run] = {}
                for path in sorted((held.run / "course" / RESULTS_DIR).glob("*.json")):
                    try:
                        report = load_report(path)
                    except ValueError as err:
                        term.warnings.append(str(err))
                        continue
                    reports[held.run][report.student_id] = report
            report = reports[held.run].get(student)
            if report is not None:
                kinds = {p.kind for p in report.problems}
                held.row["flags"] = [what for what, listed in LISTED.items() if kinds & set(listed)]


def gather_term(out: Path, runs: tuple[Path, ...] = (), url: str | None = None) -> Term:
    """Read every assignment of the gradebooks of the run folders ``out`` and ``runs`` and of the
    shared gradebook ``url``.

    A run folder's flags come from its saved grading reports; a run folder that holds several
    assignments' gradebooks is read whole, each assignment's submissions as their gradebooks hold them.
    A student can be in several gradebooks of a run (``course extend`` enters an empty submission in each;
    the workers' gradebooks copy the release's): the one the run's index (``gradebooks.json``) names wins,
    then one that was autograded, then the latest submission; two autograded copies of one submission are
    reported under :attr:`Term.warnings`.

    Raises:
        PipelineError: if none of them holds a gradebook.
    """
    term = Term()
    for run in (Path(out), *(Path(r) for r in runs)):
        root = run / "course"
        books = sorted(p.name for p in root.glob("gradebook*.db"))
        index = json.loads((root / INDEX).read_text()) if (root / INDEX).exists() else {}
        for name in books:
            label = f"{run}/course/{name}"
            _read_book(term, db_url(root, name), label, set(index.get(name, [])), run)
            term.sources.append(label)
        for name in index:
            if "://" in name and (url is None or redact(url) != name):
                term.warnings.append(f"{run} was graded into {name}; pass its URL with --db to read it")
    if url is not None:
        _read_book(term, url, redact(url), None, None)
        term.sources.append(redact(url))
        _attach_server_runs(term, (Path(out), *(Path(r) for r in runs)), url)
    if not term.sources:
        raise PipelineError(
            f"no gradebook in {', '.join(str(Path(r) / 'course') for r in (out, *runs))}; pass the folders "
            "`course autograde` wrote (--out, --runs) or a shared gradebook (--db)"
        )
    term.students = {s: a for s, a in sorted(term.students.items()) if a}
    _flag(term)
    for assignment, info in term.assignments.items():
        held = [a[assignment] for a in term.students.values() if assignment in a and a[assignment].row["submitted"]]
        info["submissions"] = len(held)
        info["late"] = sum(h.row["seconds_late"] > 0 for h in held)
        info["extensions"] = sum(h.row["extension_hours"] > 0 for h in held)
    term.assignments = dict(sorted(term.assignments.items()))
    return term


def _run_assignments(run: Path) -> set[str]:
    """The assignments a run folder was prepared for (``<run>/course/source/<assignment>``, which every
    ``course`` command that grades copies there)."""
    source = Path(run) / "course" / "source"
    return {p.name for p in source.iterdir() if p.is_dir()} if source.is_dir() else set()


def _attach_server_runs(term: Term, runs: tuple[Path, ...], url: str) -> None:
    """The submissions read from the server get the saved reports of the run folder whose index names
    them and that graded their assignment (the machines of a sharded run, one run per homework)."""
    for run in runs:
        path = run / "course" / INDEX
        if not path.exists():
            continue
        graded = _run_assignments(run)
        for student in json.loads(path.read_text()).get(redact(url), []):
            for assignment, held in term.students.get(student, {}).items():
                if held.book == redact(url) and held.run is None and (not graded or assignment in graded):
                    held.run = run


def summarize_term(term: Term) -> dict:
    """``term.json``: ``{"assignments": [{"name", "max", "due", "submissions", "late", "extensions",
    "mean"}], "students": [{"student", "assignments": {name: {"total", "penalty", "seconds_late",
    "days_late", "extension_hours", "manual_pending", "flags"}}, "total", "max", "late_days",
    "extensions", "flags"}], "sources", "warnings"}``. A missing submission counts 0 in the total.
    ``late_days`` adds over the assignments the started days after the due date plus extension."""
    names = list(term.assignments)
    possible = sum(info["max"] for info in term.assignments.values())
    students = []
    for student, by_assignment in term.students.items():
        cells = {}
        for name in names:
            held = by_assignment.get(name)
            if held is None or not held.row["submitted"]:
                cells[name] = None if held is None else {"total": None, "extension_hours": held.row["extension_hours"]}
                continue
            r = held.row
            cells[name] = {
                "total": r["total"],
                "penalty": r["penalty"],
                "seconds_late": r["seconds_late"],
                "days_late": r["days_late"],
                "extension_hours": r["extension_hours"],
                "manual_pending": r["manual_pending"],
                "flags": r["flags"],
            }
        given = [c for c in cells.values() if c is not None]
        students.append(
            {
                "student": student,
                "assignments": cells,
                "total": round(sum(c["total"] or 0.0 for c in given), 3),
                "max": possible,
                "late_days": sum(c.get("days_late", 0) for c in given),
                "extensions": sum(c["extension_hours"] > 0 for c in given),
                "flags": sum(bool(c.get("flags")) for c in given),
            }
        )
    assignments = []
    for name, info in term.assignments.items():
        totals = [c["total"] for s in students if (c := s["assignments"][name] or {}).get("total") is not None]
        assignments.append(
            {
                "name": name,
                "max": info["max"],
                "due": format_utc(info["due"]) if info["due"] else None,
                "submissions": info["submissions"],
                "late": info["late"],
                "extensions": info["extensions"],
                "mean": round(sum(totals) / len(totals), 3) if totals else None,
            }
        )
    return {"assignments": assignments, "students": students, "sources": term.sources, "warnings": term.warnings}


def write_csv(summary: dict, path: Path) -> Path:
    """``term.csv``: one row per student; per assignment its total (empty: no submission) and late days;
    then the term's total, the points possible, late days, extensions and flagged submissions."""
    names = [a["name"] for a in summary["assignments"]]
    header = ["student_id"]
    for name in names:
        header += [name, f"{name} late days"]
    header += ["total", "possible", "late_days", "extensions", "flagged"]
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for s in summary["students"]:
            row = [s["student"]]
            for name in names:
                cell = s["assignments"][name] or {}
                total = cell.get("total")
                row += ["" if total is None else points(total), cell.get("days_late", "") if total is not None else ""]
            row += [points(s["total"]), points(s["max"]), s["late_days"], s["extensions"], s["flags"]]
            writer.writerow(row)
    return Path(path)


def _cell_html(cell: dict | None) -> tuple[str, float]:
    e = html.escape
    if cell is None or cell["total"] is None:
        if cell is None:
            return "no submission", -1
        extension = f" (extension {cell['extension_hours']:g} h)" if cell.get("extension_hours") else ""
        return f"no submission{extension}", -1
    parts = [f"<b>{points(cell['total'])}</b>"]
    if cell["seconds_late"] > 0:
        parts.append(
            f"<span class=late>late {e(format_duration(cell['seconds_late']))}, -{points(cell['penalty'])}</span>"
        )
    if cell["extension_hours"]:
        parts.append(f"extension {cell['extension_hours']:g} h")
    if cell["manual_pending"]:
        parts.append(f"{cell['manual_pending']} written answer(s) to grade")
    if cell["flags"]:
        parts.append(e(", ".join(cell["flags"])))
    return "<br>".join(parts), cell["total"]


def render_term(summary: dict) -> str:
    """The term page (every student-controlled text escaped)."""
    e = html.escape
    names = [a["name"] for a in summary["assignments"]]
    possible = sum(a["max"] for a in summary["assignments"])
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>The term: every assignment</title>",
        f"<style>{STYLE}</style></head><body>"
        f"<h1>The term: {len(summary['students'])} students, {len(names)} assignment(s)</h1>",
        "<p>Totals are after late penalties, as each assignment's grades.csv and the LMS files have them; a "
        "missing submission counts 0 in the term's total.</p>",
        "<table id=assignments><tr><th>assignment</th><th>points</th><th>due</th><th>submissions</th>"
        "<th>late</th><th>extensions</th><th>mean total</th></tr>",
    ]
    for a in summary["assignments"]:
        mean = "" if a["mean"] is None else f"{a['mean']:.2f}"
        parts.append(
            f"<tr><td>{e(a['name'])}</td><td class=n>{a['max']:g}</td><td>{e(a['due'] or 'none')}</td>"
            f"<td class=n>{a['submissions']}</td><td class=n>{a['late']}</td><td class=n>{a['extensions']}</td>"
            f"<td class=n>{mean}</td></tr>"
        )
    parts.append("</table><h2>Students</h2><p>Click a column's title to sort by it.</p>")
    headers = [("student", False)] + [
        (f"{n} (of {a['max']:g})", True) for n, a in zip(names, summary["assignments"], strict=True)
    ]
    headers += [(f"total (of {possible:g})", True), ("late days", True), ("extensions", True), ("flagged", True)]
    rows = []
    for s in summary["students"]:
        row = [(e(s["student"]), s["student"])]
        row += [_cell_html(s["assignments"][name]) for name in names]
        row += [
            (f"<b>{points(s['total'])}</b>", s["total"]),
            (str(s["late_days"]), s["late_days"]),
            (str(s["extensions"]), s["extensions"]),
            (str(s["flags"]), s["flags"]),
        ]
        rows.append(row)
    parts.append(sortable_table("term", headers, rows))
    parts.append("<h2>Gradebooks read</h2><ul>" + "".join(f"<li>{e(s)}</li>" for s in summary["sources"]) + "</ul>")
    if summary["warnings"]:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li class=warn>{e(w)}</li>" for w in summary["warnings"]))
        parts.append("</ul>")
    parts.append(SORT_SCRIPT)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_term_report(out: Path, runs: tuple[Path, ...] = (), url: str | None = None, dest: Path | None = None) -> Path:
    """Write ``index.html``, ``term.csv`` and ``term.json`` of the term into ``dest`` (default
    ``<out>/term``); returns the page's path.

    Arguments as in :func:`gather_term`.

    Raises:
        PipelineError: if no gradebook is found.
    """
    out = Path(out).resolve()
    dest = Path(dest).resolve() if dest is not None else out / "term"
    summary = summarize_term(gather_term(out, tuple(Path(r).resolve() for r in runs), url))
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "term.json").write_text(json.dumps(summary, indent=1))
    write_csv(summary, dest / "term.csv")
    page = dest / "index.html"
    page.write_text(render_term(summary))
    return page
