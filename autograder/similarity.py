"""Similarity review: pairs of submissions whose answer cells are alike after renaming and reformatting.

Each answer cell, less the code the release gave every student, becomes per-statement syntax-node tokens in
which the answer's own names are placeholders (:func:`normalize_answer`); two answers are compared by the
Jaccard similarity of their statements' token n-grams (:func:`fingerprints`). ``docs/instructors.md``
("Similarity review") explains the threshold and the comparison with earlier terms (``--against``).
Written (markdown) answers are not compared. The result is for an instructor's review, not a verdict.
"""

from __future__ import annotations

import ast
import copy
import io
import json
import keyword
import textwrap
import tokenize
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import nbformat

from autograder.course import ASSIGNMENTS, PipelineError, source_dir, step_dir
from autograder.pipeline import students_in

#: Tokens in one n-gram (fingerprint). Longer n-grams make chance matches of common idioms rarer.
NGRAM = 8
#: Answers with fewer normalized tokens than this (after the release code is removed) are not
#: compared. ``return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)`` is about 20 tokens.
MIN_TOKENS = 60
#: Default threshold on the Jaccard similarity of two answers' n-gram sets.
DEFAULT_THRESHOLD = 0.5

# Fields of ast nodes left out of the comparison: annotations say nothing about what code does.
_SKIPPED_FIELDS = frozenset({"annotation", "returns", "type_comment", "ctx"})
# Statement-list fields searched for release code inside a statement that the release also has.
_BLOCKS = ("body", "orelse", "finalbody")


@dataclass(frozen=True)
class Answer:
    """One student's answer cell, as compared.

    Attributes:
        text: the answer's source with the release's code removed (what the JSON shows).
        fingerprints: hashes of its token n-grams (empty when it has fewer than ``MIN_TOKENS`` tokens).
        statements: per statement, its first and last line in ``text`` (1-based; a compound
            statement's head only) and its n-grams' hashes.
    """

    text: str
    fingerprints: frozenset[int]
    statements: tuple[tuple[int, int, frozenset[int]], ...] = ()


# ---------------------------------------------------------------- the release's code


@dataclass(frozen=True)
class Release:
    """The code answer cells of an assignment's student version.

    Attributes:
        cells: ``{(notebook file name, grade_id): released source}`` for every code cell whose
            nbgrader metadata says ``solution: true``.
        markers: the solution delimiters (``BEGIN SOLUTION``, ``END SOLUTION``): comment lines that
            hold them are the source's, never a student's.
    """

    cells: dict[tuple[str, str], str]
    markers: tuple[str, ...]


def released_cells(assignment: str) -> Release:
    """The code answer cells of the student version of ``assignment``, as released.

    The source notebooks' solution regions are cleared by nbgrader's ``ClearSolutions`` with the
    course's ``assignments/nbgrader_config.py`` (its code stub), as ``nbgrader generate_assignment`` does.

    Raises:
        PipelineError: if there is no such assignment.
    """
    from nbgrader.preprocessors import ClearSolutions  # here: nbgrader's preprocessors take seconds to import
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(ASSIGNMENTS)).load_config()
    clear = ClearSolutions(config=config)
    cells = {}
    for path in sorted(source_dir(assignment).glob("*.ipynb")):
        nb, _ = clear.preprocess(nbformat.read(path, as_version=4), {})
        for grade_id, source in answer_cells(nb).items():
            cells[path.name, grade_id] = source
    return Release(cells, (clear.begin_solution_delimeter, clear.end_solution_delimeter))


def answer_cells(nb: nbformat.NotebookNode) -> dict[str, str]:
    """``{grade_id: source}`` of the code cells of ``nb`` that nbgrader marks as solution cells."""
    cells = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "code" and meta.get("solution") and meta.get("grade_id"):
            cells[meta["grade_id"]] = cell.source
    return cells


# ---------------------------------------------------------------- release code out of an answer


def _parse(source: str) -> ast.Module | None:
    """``source`` parsed, IPython magics (``%time``, ``!ls``) turned into Python first; None if it does not parse."""
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: a null byte
        pass
    from IPython.core.inputtransformer2 import TransformerManager  # only for the rare cell with magics

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError):
        return None


def _without_annotations(node: ast.AST) -> ast.AST:
    """A copy of ``node`` without type annotations (``x: int``, ``-> np.ndarray``)."""
    node = copy.deepcopy(node)
    for child in ast.walk(node):
        if isinstance(child, ast.arg):
            child.annotation = None
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            child.returns = None
    return node


def _head(stmt: ast.stmt) -> str:
    """``stmt`` without its blocks of statements (a ``def`` line, a ``for`` line) and its annotations, as
    a layout-free dump: a student who dropped the annotations of a provided ``def`` line still has it."""
    fields = {name: ([] if name in _BLOCKS else value) for name, value in ast.iter_fields(stmt)}
    return ast.dump(_without_annotations(type(stmt)(**fields)))


def _own_statements(stmts: list[ast.stmt], release: list[ast.stmt], removed: list[tuple[int, int]]) -> list[ast.stmt]:
    """The statements of ``stmts`` that are not the release's ``release``, searching inside the blocks
    of a statement whose head (``def`` line, ``class`` line, ...) the release has too.

    ``removed`` gets the ``(first, last)`` source lines (1-based) of what was taken out.
    """
    whole = Counter(ast.dump(s) for s in release)
    heads = {_head(s): s for s in release if any(getattr(s, b, None) for b in _BLOCKS)}
    kept: list[ast.stmt] = []
    for stmt in stmts:
        first = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
        dump = ast.dump(stmt)
        if whole[dump]:
            whole[dump] -= 1
            removed.append((first, stmt.end_lineno or stmt.lineno))
            continue
        blocks = [b for b in _BLOCKS if getattr(stmt, b, None)]
        match = heads.get(_head(stmt)) if blocks else None
        if match is None:
            kept.append(stmt)
            continue
        removed.append((first, getattr(stmt, blocks[0])[0].lineno - 1))  # the head's lines
        for block in blocks:
            kept += _own_statements(getattr(stmt, block), getattr(match, block, None) or [], removed)
    return kept


def _is_marker(line: str, markers: tuple[str, ...]) -> bool:
    """Is ``line`` a comment that holds a solution marker (``### BEGIN SOLUTION``)?"""
    text = line.strip()
    return text.startswith("#") and any(marker in text for marker in markers)


def _without_lines(
    source: str, removed: Iterable[tuple[int, int]], release: str, markers: tuple[str, ...]
) -> tuple[str, dict[int, int]]:
    """``source`` without the line ranges ``removed``, the comment lines that the release has and the
    solution markers, blank edges trimmed and the common indentation removed; and where each kept
    line of ``source`` is in it (1-based line numbers)."""
    gone = {n for first, last in removed for n in range(first, last + 1)}
    comments = {line.strip() for line in release.splitlines() if line.strip().startswith("#")}
    kept = [
        (n, line)
        for n, line in enumerate(source.splitlines(), start=1)
        if n not in gone and line.strip() not in comments and not _is_marker(line, markers)
    ]
    text = textwrap.dedent("\n".join(line for _, line in kept))
    lead = len(text) - len(text.lstrip("\n"))  # blank lines trimmed from the top
    return text.strip("\n"), {n: k - lead + 1 for k, (n, _) in enumerate(kept) if k >= lead}


def _without_release_lines(source: str, release: str, markers: tuple[str, ...]) -> str:
    """``source`` without the lines (compared stripped) that the release has and the solution markers:
    for answers that do not parse."""
    given = Counter(line.strip() for line in release.splitlines() if line.strip())
    lines = []
    for line in source.splitlines():
        if given[line.strip()]:
            given[line.strip()] -= 1
        elif not _is_marker(line, markers):
            lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip("\n")


# ---------------------------------------------------------------- normalized tokens


def _defined_names(stmts: list[ast.stmt]) -> set[str]:
    """The names that ``stmts`` bind: assigned variables and attributes, arguments, functions, classes."""
    names: set[str] = set()
    for stmt in stmts:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.ExceptHandler):
                names.add(node.name or "")
    return names


def _is_docstring(node: ast.AST) -> bool:
    """Is ``node`` a statement that is only a string (a docstring, or a string used as a comment)?"""
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _constant(value: object) -> str:
    """A constant as a token: short ones as they are, long ones by their type."""
    text = repr(value)
    return text if len(text) <= 24 else f"<{type(value).__name__}>"


def ast_tokens(stmts: list[ast.stmt], cell: list[ast.stmt] | None = None) -> list[list[str]]:
    """The statements as node tokens, one list per statement (a compound statement's list holds its
    head: ``for`` target and iterable, ``if`` test), in source order.

    Each node gives its type name, in a pre-order walk of the syntax tree; a statement's list starts
    with the type of the statement it is nested in. A name that the whole cell ``cell`` (default:
    ``stmts``) binds becomes ``v0``, ``v1``, ... by first appearance in its statement, so that
    renaming, and reordering independent statements, change nothing inside a statement; names the
    cell only uses (``torch``, ``np.zeros``, the notebook's helpers) and constants stay (long
    constants become their type); docstrings, annotations and the layout leave nothing.
    """
    return _tokens_and_statements(stmts, cell)[0]


def _tokens_and_statements(
    stmts: list[ast.stmt], cell: list[ast.stmt] | None = None
) -> tuple[list[list[str]], list[ast.stmt]]:
    """:func:`ast_tokens`, and the statement node each token list belongs to."""
    defined = _defined_names(stmts if cell is None else cell)
    placeholders: dict[str, str] = {}
    nodes: list[ast.stmt] = []

    def name(text: str) -> str:
        if text not in defined:
            return text
        return placeholders.setdefault(text, f"v{len(placeholders)}")

    statements: list[list[str]] = []
    stack: list[tuple[ast.AST, str]] = [(stmt, "Module") for stmt in reversed(stmts)]
    while stack:
        node, parent = stack.pop()
        if _is_docstring(node):
            continue
        kind = type(node).__name__
        if isinstance(node, ast.stmt):
            placeholders.clear()
            statements.append([f"in:{parent}"])
            nodes.append(node)
            parent = kind
        tokens = statements[-1]
        if isinstance(node, ast.Name):
            tokens.append(f"{kind}:{name(node.id)}")
        elif isinstance(node, ast.Attribute):
            tokens.append(f"{kind}:{name(node.attr)}")
        elif isinstance(node, ast.arg):
            tokens.append(f"{kind}:{name(node.arg)}")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            tokens.append(f"{kind}:{name(node.name)}")
        elif isinstance(node, ast.keyword):
            tokens.append(f"{kind}:{name(node.arg) if node.arg else '**'}")
        elif isinstance(node, ast.Constant):
            tokens.append(f"{kind}:{_constant(node.value)}")
        elif isinstance(node, ast.alias):
            tokens.append(f"{kind}:{node.name}")
        else:
            tokens.append(kind)
        children = [
            (child, parent)
            for field, value in ast.iter_fields(node)
            if field not in _SKIPPED_FIELDS
            for child in (value if isinstance(value, list) else [value])
            if isinstance(child, ast.AST)
        ]
        stack.extend(reversed(children))
    return statements, nodes


def text_tokens(source: str) -> list[list[str]]:
    """Tokens of code that does not parse, from :mod:`tokenize`, one list per logical line: names become
    placeholders by first appearance in their line (keywords stay), comments and layout are dropped;
    tokenizing stops at the first error.

    Lines are stripped of their indentation first, so that broken indentation cannot stop it.
    """
    return _text_tokens_and_lines(source)[0]


def _text_tokens_and_lines(source: str) -> tuple[list[list[str]], list[tuple[int, int]]]:
    """:func:`text_tokens`, and the first and last line (1-based) of each logical line."""
    placeholders: dict[str, str] = {}
    lines: list[list[str]] = [[]]
    spans: list[list[int]] = [[0, 0]]
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    flat = "\n".join(line.strip() for line in source.splitlines())
    try:
        for tok in tokenize.generate_tokens(io.StringIO(flat).readline):
            if tok.type not in skip and tok.type != tokenize.NEWLINE:
                spans[-1] = [spans[-1][0] or tok.start[0], tok.end[0]]
            if tok.type == tokenize.NEWLINE:
                placeholders.clear()
                lines.append([])
                spans.append([0, 0])
            elif tok.type in skip:
                continue
            elif tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
                lines[-1].append(placeholders.setdefault(tok.string, f"v{len(placeholders)}"))
            elif tok.type in (tokenize.STRING, tokenize.NUMBER):
                lines[-1].append(_constant(tok.string))
            else:
                lines[-1].append(tok.string)
    except (tokenize.TokenError, SyntaxError):
        pass
    kept = [(line, (first, last)) for line, (first, last) in zip(lines, spans, strict=True) if line]
    return [line for line, _ in kept], [span for _, span in kept]


def fingerprints(statements: list[list[str]], n: int = NGRAM, min_tokens: int = MIN_TOKENS) -> frozenset[int]:
    """Hashes of the ``n``-grams of each statement's tokens (a shorter statement is one gram); empty
    when there are fewer than ``min_tokens`` tokens in all (short code is alike by chance).

    The fingerprinting idea of Schleimer, Wilkerson and Aiken, "Winnowing: local algorithms for document
    fingerprinting" (SIGMOD 2003), without the winnowing step: all n-grams are kept (answers are short).
    N-grams do not cross statements: moving a statement changes none of them.
    """
    if sum(len(tokens) for tokens in statements) < min_tokens:
        return frozenset()
    return frozenset(
        hash(tuple(tokens[i : i + n])) for tokens in statements for i in range(max(1, len(tokens) - n + 1))
    )


def statement_grams(tokens: list[str], n: int = NGRAM) -> frozenset[int]:
    """The hashes of one statement's ``n``-grams (a shorter statement is one gram), as :func:`fingerprints`."""
    return frozenset(hash(tuple(tokens[i : i + n])) for i in range(max(1, len(tokens) - n + 1)))


def _head_lines(node: ast.stmt) -> tuple[int, int]:
    """A statement's lines (1-based), a compound statement's head only (its decorators included)."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    blocks = [getattr(node, b) for b in (*_BLOCKS, "handlers") if getattr(node, b, None)]
    last = min(block[0].lineno for block in blocks) - 1 if blocks else (node.end_lineno or node.lineno)
    return first, max(first, last)


def normalize_answer(source: str, release: str, markers: tuple[str, ...] = ()) -> Answer:
    """One answer cell with the release's code removed, and its fingerprints.

    The statements of the released cell are taken out before anything is compared, so a student who only
    kept the provided code has nothing left to be similar with. The rest is tokenized by :func:`ast_tokens`,
    or by :func:`text_tokens` if it does not parse (or nests too deeply); each statement keeps its lines
    in ``text`` and its n-grams, for :func:`matched_lines`.

    Args:
        source: the student's cell source.
        release: the same cell in the released (student) notebook.
        markers: solution delimiters whose comment lines are dropped from the text (:class:`Release`).
    """
    tree, given = _parse(source), _parse(release)
    if tree is not None and given is not None:
        removed: list[tuple[int, int]] = []
        try:
            own = _own_statements(tree.body, given.body, removed)
            text, shown = _without_lines(source, removed, release, markers)
            tokens, nodes = _tokens_and_statements(own, tree.body)
            statements = []
            for statement, node in zip(tokens, nodes, strict=True):
                first, last = _head_lines(node)
                lines = [shown[n] for n in range(first, last + 1) if n in shown]
                if lines:
                    statements.append((min(lines), max(lines), statement_grams(statement)))
            return Answer(text, fingerprints(tokens), tuple(statements))
        except RecursionError:  # nested too deeply for ast.dump: compared by its tokens
            pass
    text = _without_release_lines(source, release, markers)
    tokens, spans = _text_tokens_and_lines(text)
    statements = tuple((first, last, statement_grams(t)) for t, (first, last) in zip(tokens, spans, strict=True))
    return Answer(text, fingerprints(tokens), statements)


def matched_lines(answer: Answer, other: Answer) -> list[list[int]]:
    """The lines of ``answer`` (``[first, last]`` ranges, 1-based, in its text) whose statements
    ``other`` shares: at least half of a statement's n-grams are ``other``'s too."""
    ranges: list[list[int]] = []
    for first, last, grams in sorted(answer.statements, key=lambda st: st[:2]):
        if grams and 2 * len(grams & other.fingerprints) >= len(grams):
            if ranges and first <= ranges[-1][1] + 1:
                ranges[-1][1] = max(ranges[-1][1], last)
            else:
                ranges.append([first, last])
    return ranges


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    """``|a & b| / |a | b|``; 0 when either is empty."""
    if not a or not b:
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


# ---------------------------------------------------------------- the class


def submission_folders(assignment: str, out: Path, submissions: Path | None = None) -> dict[str, Path]:
    """Each student's folder of notebooks: ``submissions/<student>/`` (one folder per student, as
    ``course autograde`` takes), or by default the graded submissions nbgrader keeps in
    ``<out>/course/submitted/<student>/<assignment>/``.

    Raises:
        PipelineError: if there is no submission to compare.
    """
    if submissions is not None:
        if not Path(submissions).is_dir():
            raise PipelineError(f"{submissions} is not a folder (expected one sub-folder of notebooks per student)")
        folders = {p.name: p for p in students_in(submissions)}  # as course autograde reads them
        where = str(submissions)
    else:
        submitted = Path(out) / "course" / "submitted"
        students = sorted(p.name for p in submitted.iterdir() if p.is_dir()) if submitted.is_dir() else []
        folders = {s: step_dir(Path(out) / "course", "submitted", s, assignment) for s in students}
        folders = {s: p for s, p in folders.items() if p.is_dir()}
        where = f"{submitted}/<student>/{assignment}"
    if not folders:
        raise PipelineError(
            f"no submissions of {assignment} in {where}; run `course autograde` first or pass --submissions DIR"
        )
    return dict(sorted(folders.items()))


def student_answers(folder: Path, release: Release) -> dict[tuple[str, str], Answer]:
    """A student's answers, by ``(notebook, grade_id)``, for the answer cells of ``release`` that the
    notebooks in ``folder`` have (a missing or unreadable notebook has none)."""
    answers = {}
    for notebook in sorted({nb for nb, _ in release.cells}):
        path = folder / notebook
        if not path.is_file():
            continue
        try:
            cells = answer_cells(nbformat.read(path, as_version=4))
        except Exception:  # not JSON, not a notebook, not valid: whatever a student sent, nothing to compare
            continue
        for grade_id, source in cells.items():
            if (notebook, grade_id) in release.cells:
                given = release.cells[notebook, grade_id]
                answers[notebook, grade_id] = normalize_answer(source, given, release.markers)
    return answers


def similar_pairs(
    answers: dict[str, dict[tuple[str, str], Answer]],
    threshold: float = DEFAULT_THRESHOLD,
    earlier: dict[str, dict[tuple[str, str], Answer]] | None = None,
) -> list[dict]:
    """The pairs of students with at least one answer cell at or above ``threshold``.

    Args:
        answers: ``{student: {(notebook, grade_id): Answer}}``, this run's.
        threshold: Jaccard similarity in (0, 1] at which a cell is listed.
        earlier: the same for the students of earlier terms (``"<archive>/<student>"``), compared with
            this run's students only.

    Returns:
        ``[{"a", "b", "score", "earlier", "cells": [{"notebook", "cell", "score", "answer_a", "answer_b",
        "matched_a", "matched_b"}]}]``: ``a`` is this run's, ``b`` this run's or an earlier term's
        (``earlier`` true); a pair's score is its most similar cell's, its cells those at or above
        ``threshold`` (most similar first), ``matched_a``/``matched_b`` the lines of the statements
        the two answers share (:func:`matched_lines`); pairs by score, then by number of cells, descending.
    """
    earlier = earlier or {}
    found: dict[tuple[str, str], list[dict]] = {}
    keys = sorted({key for student in [*answers.values(), *earlier.values()] for key in student})
    for notebook, grade_id in keys:
        holders = _comparable(answers, (notebook, grade_id))
        before = _comparable(earlier, (notebook, grade_id))
        pairs = [*combinations(holders, 2), *((h, e) for h in holders for e in before)]
        for (sa, aa), (sb, ab) in pairs:
            small, large = sorted((len(aa.fingerprints), len(ab.fingerprints)))
            if small < threshold * large:  # the Jaccard similarity cannot reach it
                continue
            score = jaccard(aa.fingerprints, ab.fingerprints)
            if score >= threshold:
                cell = {"notebook": notebook, "cell": grade_id, "score": round(score, 4)}
                cell |= {"answer_a": aa.text, "answer_b": ab.text}
                cell |= {"matched_a": matched_lines(aa, ab), "matched_b": matched_lines(ab, aa)}
                found.setdefault((sa, sb), []).append(cell)
    pairs_found = []
    for (a, b), cells in found.items():
        cells.sort(key=lambda c: -c["score"])
        pairs_found.append({"a": a, "b": b, "score": cells[0]["score"], "earlier": b in earlier, "cells": cells})
    pairs_found.sort(key=lambda p: (-p["score"], -len(p["cells"]), p["a"], p["b"]))
    return pairs_found


def _comparable(answers: dict[str, dict[tuple[str, str], Answer]], key: tuple[str, str]) -> list[tuple[str, Answer]]:
    """The students whose answer to the cell ``key`` is long enough to compare, with it."""
    return [(s, a[key]) for s, a in answers.items() if key in a and a[key].fingerprints]


def archived_folders(assignment: str, archive: Path) -> dict[str, Path]:
    """The submissions of an earlier term, by ``"<archive name>/<student>"``: an ``--out`` folder of
    ``course autograde`` (its graded submissions) or a folder with one sub-folder per student.

    Raises:
        PipelineError: if ``archive`` holds no submission of ``assignment``.
    """
    archive = Path(archive)
    graded = archive / "course" / "submitted"
    try:
        folders = submission_folders(assignment, archive, None if graded.is_dir() else archive)
    except PipelineError as err:
        raise PipelineError(
            f"--against {archive}: {err} (expected the --out folder of an earlier `course autograde`, or a "
            "folder with one sub-folder of notebooks per student)"
        ) from None
    label = archive.resolve().name
    return {f"{label}/{student}": folder for student, folder in folders.items()}


def review(
    assignment: str,
    out: Path,
    submissions: Path | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    against: tuple[Path, ...] = (),
) -> dict:
    """Compare every pair of submissions of ``assignment``, and each with the earlier terms' archived
    submissions ``against``; write ``<out>/similarity.json``.

    Args:
        assignment: the assignment's name (``assignments/source/<assignment>``).
        out: the output folder of ``course autograde`` (where the graded submissions are, by default).
        submissions: a folder with one sub-folder of notebooks per student, instead of the graded ones.
        threshold: Jaccard similarity in (0, 1] at which an answer cell is listed.
        against: earlier terms' folders (:func:`archived_folders`).

    Returns:
        What was written: ``{"assignment", "threshold", "students", "against", "earlier_students",
        "pairs"}`` (see :func:`similar_pairs`).

    Raises:
        PipelineError: if there is no such assignment or no submission (here or in an archive), two
            archives have the same name, or ``threshold`` is not in (0, 1].
    """
    if not 0 < threshold <= 1:
        raise PipelineError(f"threshold {threshold} must be in (0, 1] (a Jaccard similarity)")
    release = released_cells(assignment)
    folders = submission_folders(assignment, out, submissions)
    answers = {student: student_answers(folder, release) for student, folder in folders.items()}
    earlier: dict[str, dict[tuple[str, str], Answer]] = {}
    labels: list[str] = []
    for archive in against:
        archived = archived_folders(assignment, archive)
        label = next(iter(archived)).split("/")[0]
        if label in labels:
            raise PipelineError(f"two --against folders are named {label!r}; give the archives distinct names")
        labels.append(label)
        earlier |= {student: student_answers(folder, release) for student, folder in archived.items()}
    result = {
        "assignment": assignment,
        "threshold": threshold,
        "students": len(folders),
        "against": labels,
        "earlier_students": len(earlier),
        "pairs": similar_pairs(answers, threshold, earlier),
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "similarity.json").write_text(json.dumps(result, indent=1))
    return result


def describe(pairs: list[dict]) -> Iterator[str]:
    """One line per pair: the two students, the score and the cells (notebook:grade_id score); an
    earlier term's student is marked ``(earlier term)``."""
    for pair in pairs:
        cells = ", ".join(f"{c['notebook']}:{c['cell']} {c['score']:.2f}" for c in pair["cells"])
        b = f"{pair['b']} (earlier term)" if pair.get("earlier") else pair["b"]
        yield f"{pair['a']}  {b}  {pair['score']:.2f}  {cells}"
