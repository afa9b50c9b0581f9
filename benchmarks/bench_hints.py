"""How often the feedback's "Likely cause" hint names the right bug, measured leave-one-out.

Each mutant and variant of the library (``autograder/hint_library.json``, built by
``python -m autograder.hints build``) is held out in turn and its signature matched against the
others: the hint shown is *right* if it is the held-out mutant's own bug's, *wrong* if another
bug's; no hint (no match, or more than one bug) is *abstained*. A bug's hint is shown in the
feedback only if its precision (right / shown) is at least the threshold and it was shown at
least once.

Coverage: how many of the known bugs get a hint in the feedback, and for each that does not, why
(:func:`autograder.hints.coverage`: written one way only, its ways failing at different tests, a
signature another bug shares, a signature that changes with the seed).

A second measure holds out each bug whole (all its mutants): a bug the library does not know
should get no hint, so every hint such a mutant is shown (by the library without that bug, with its
own precision gate) is a wrong one. ``--build`` recomputes the signatures first (minutes: every
notebook with a mutant runs in-process, three seeds).

Usage: ``python benchmarks/bench_hints.py [--build]``
"""

from __future__ import annotations

import argparse
import time

from _common import conditions, emit, log, machine

from autograder import hints
from autograder.hints import Library


def unknown_bug_hints(library: Library) -> dict[str, int]:
    """``{"held_out": mutants, "hinted": of which got a hint}`` with each bug held out whole: every
    such hint names a bug the mutant does not have."""
    held_out = hinted = 0
    for bug in {e.bug for e in library.entries}:
        rest = Library(tuple(e for e in library.entries if e.bug != bug), threshold=library.threshold)
        for entry in (e for e in library.entries if e.bug == bug):
            held_out += 1
            hinted += rest.hint(entry.signature, entry.assignment, entry.notebook) is not None
    return {"held_out": held_out, "hinted": hinted}


def main() -> None:
    """Print the leave-one-out tallies per bug and overall as one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="recompute the library's signatures first")
    args = parser.parse_args()
    before = conditions()
    start = time.perf_counter()
    library = hints.build(log=log) if args.build else hints.load_library()
    build_seconds = time.perf_counter() - start if args.build else None
    if library.fingerprint != hints.fingerprint():
        log(f"warning: the library is out of date; run {hints.BUILD_COMMAND} (or pass --build)")
    tallies = library.tallies()
    shown = library.shown_bugs()
    per_bug = {
        bug: {
            "mutants": sum(e.bug == bug for e in library.entries),
            "shown": t.shown,
            "right": t.right,
            "wrong": t.wrong,
            "abstained": t.abstained,
            "precision": None if t.precision is None else round(t.precision, 3),
            "hint_in_feedback": bug in shown,
        }
        for bug, t in sorted(tallies.items())
    }
    why = hints.coverage(library)
    total_shown = sum(t.shown for t in tallies.values())
    total_right = sum(t.right for t in tallies.values())
    kept = [t for bug, t in tallies.items() if bug in shown]
    kept_shown = sum(t.shown for t in kept)
    emit(
        {
            "benchmark": "hints",
            "machine": machine(),
            "conditions_before": before,
            "conditions_after": conditions(),
            "targets": {
                "every hint in the feedback has precision >= threshold": all(
                    tallies[b].precision >= library.threshold for b in shown
                ),
                "every bug is written at least two ways": all(v["mutants"] >= 2 for v in per_bug.values()),
                "every bug whose signature no other bug shares has a hint": all(
                    reason is None or "is also" in reason for reason in why.values()
                ),
            },
            "known_bugs": len(why),
            "bugs_with_a_hint": sum(reason is None for reason in why.values()),
            "bugs_without_a_hint": {bug: reason for bug, reason in why.items() if reason is not None},
            "threshold": library.threshold,
            "mutants": len(library.entries),
            "bugs": len(tallies),
            "unstable_signatures": len(library.unstable),
            "overall": {
                "all hints": {
                    "shown": total_shown,
                    "right": total_right,
                    "wrong": total_shown - total_right,
                    "abstained": sum(t.abstained for t in tallies.values()),
                    "precision": round(total_right / total_shown, 3) if total_shown else None,
                },
                "hints in the feedback": {
                    "shown": kept_shown,
                    "right": sum(t.right for t in kept),
                    "wrong": sum(t.wrong for t in kept),
                    "abstained": None,
                    "precision": round(sum(t.right for t in kept) / kept_shown, 3) if kept_shown else None,
                },
            },
            "unknown_bugs": unknown_bug_hints(library),
            "bugs_with_a_hint_in_the_feedback": len(shown),
            "held_out_mutants_given_their_own_bugs_hint": sum(t.right for t in kept),
            "build_seconds": None if build_seconds is None else round(build_seconds, 1),
            "per_bug": per_bug,
        }
    )


if __name__ == "__main__":
    main()
