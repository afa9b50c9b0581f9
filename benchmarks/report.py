"""Write docs/performance.md from the benchmarks' JSON in benchmarks/results/, so the figures in the docs
are always the measured ones (``tests/test_docs.py`` fails when the page and the JSON disagree).

``make bench`` runs every ``benchmarks/bench_*.py`` and keeps each one's JSON as
``benchmarks/results/<name>.json``; then ``python benchmarks/report.py`` rewrites the page. Each
benchmark gets a section: the machine and load it ran on, its targets (met or missed), and its
results as tables.

Usage: ``python benchmarks/report.py [--check]`` (``--check``: exit 1 if the page is out of date).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PAGE = HERE.parent / "docs" / "performance.md"
#: The order of the sections, and their titles; benchmarks not listed come after, by name.
SECTIONS = {
    "training": "Training the World Models VAE (images per second, against the machine's matmul rate)",
    "collection": "Collecting frames from gymnasium environments",
    "memory": "Memory while training on shards larger than memory",
    "notebooks": "Every notebook, top to bottom, and how well its models do",
    "grading": "Autograding through nbgrader (sandboxed, with feedback)",
    "watch": "Submit to feedback with `course watch`",
    "explorer_latency": "The latent explorer's update time",
}
_SKIP = {"benchmark", "machine", "conditions_before", "conditions_after", "targets"}


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return ""
    if isinstance(value, list | tuple) and all(not isinstance(v, dict | list) for v in value):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _scalar(value: Any) -> bool:
    return not isinstance(value, dict | list) or (
        isinstance(value, list) and len(value) <= 8 and all(not isinstance(v, dict | list) for v in value)
    )


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a / b": 1}``, scalars only."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + " / "))
        elif _scalar(value):
            out[name] = value
    return out


def _table(rows: dict[str, dict]) -> list[str]:
    """A markdown table: one row per key of ``rows``, one column per scalar field they hold."""
    flat = {name: _flatten(row) if isinstance(row, dict) else {"value": row} for name, row in rows.items()}
    columns: list[str] = []
    for row in flat.values():
        columns += [c for c in row if c not in columns]
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for name, row in flat.items()]
    return lines


def _machine(data: dict) -> str:
    machine = data.get("machine", {})
    parts = [machine.get("cpu", "an unrecorded CPU")]
    if machine.get("usable_cpus"):
        parts.append(f"{machine['usable_cpus']} usable CPUs")
    if machine.get("isa"):
        parts.append("/".join(machine["isa"]))
    if machine.get("torch"):
        parts.append(f"PyTorch {machine['torch']}")
    if machine.get("date"):
        parts.append(machine["date"])
    load = data.get("conditions_before", {}).get("load_average")
    load_text = f"; load average {load[0] if isinstance(load, list) else load} at the start" if load else ""
    return f"Measured on {', '.join(map(str, parts))}{load_text}."


def render_section(name: str, data: dict) -> list[str]:
    """The markdown of one benchmark's JSON."""
    lines = [f"## {SECTIONS.get(name, name)}", "", _machine(data), ""]
    targets = _flatten(data.get("targets", {}))
    if targets:
        lines += ["| target | result |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in targets.items()] + [""]
    for key, value in data.items():
        if key in _SKIP:
            continue
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            lines += [f"**{key}**", "", *_table(value), ""]
        elif isinstance(value, dict) and value:
            lines += [f"**{key}**", "", *_table({k: v for k, v in value.items()}), ""]
        elif _scalar(value):
            lines += [f"- {key}: {_fmt(value)}"]
    return [*lines, ""]


def render(results: Path = RESULTS) -> str:
    """The whole page from every ``results/*.json``."""
    found = {p.stem: json.loads(p.read_text()) for p in sorted(Path(results).glob("*.json"))}
    by_name = {data.get("benchmark", stem): data for stem, data in found.items()}
    order = [n for n in SECTIONS if n in by_name] + sorted(n for n in by_name if n not in SECTIONS)
    lines = [
        "# Performance",
        "",
        "Generated by `python benchmarks/report.py` from `benchmarks/results/*.json`, the output of",
        "`make bench` (each `benchmarks/bench_*.py` prints one JSON object). Do not edit by hand: rerun the",
        "benchmarks, then the report. Each section says the machine and the load it was measured under.",
        "",
    ]
    if not order:
        lines += ["No results yet: run `make bench`.", ""]
    for name in order:
        lines += render_section(name, by_name[name])
    return "\n".join(lines).rstrip() + "\n"


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
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
