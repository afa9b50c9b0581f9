"""Notebook run times at their default budget, what they learn, and a linear probe of the latent.

For each notebook (``assignments/source/*/*.ipynb`` and ``notebooks/*.ipynb``), run in a
temporary copy with nbclient as a student would run it (no ``COURSE_QUICK``, no
``NBGRADER_EXECUTION``, PyTorch's default threads):

- the wall time (target: under 3 minutes);
- every "validation MSE ... vs ... mean-image baseline ..." line it prints, parsed into the model's
  validation MSE, the baseline's and their ratio (target: the baseline's error at least 2x the
  model's).

Then a **linear probe** (:mod:`course_lib.probe`): a ``SmallVAE`` trained as companion notebook 02
trains it (z 16, width 8, 13 epochs, batch 32, lr 3e-3, beta 0.1) on CartPole and on Pendulum
frames recorded with their states, and least squares from ``mu`` to the state, fit on the
training episodes, ``R^2`` on held-out episodes: CartPole's cart position and pole angle (target
``R^2 >= 0.8`` for the angle), Pendulum's cos and sin of the angle.

Usage: ``python benchmarks/bench_notebooks.py [--quick] [--only SUBSTRING] [--no-probe] [--probe-frames 3000]``
(``--quick`` runs the notebooks at their quick budget and a small probe: a smoke test, not the
measurement).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from _common import conditions, emit, load_average, log, machine
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from course_lib.probe import probe_vae

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 180.0
TARGET_RATIO = 2.0
TARGET_POLE_R2 = 0.8
NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
# "validation MSE 0.00167 [per pixel value] vs [the] mean-image baseline 0.01061", or "... (baseline 0.01061)"
MSE_LINE = re.compile(
    r"validation MSE\D*?" + NUMBER + r"(?:[^0-9\n]*?\svs\s+(?:the\s+)?mean-image baseline|\s+\(baseline)\D*?" + NUMBER
)


def notebooks() -> list[Path]:
    """The notebooks to run: assignment sources, then companion notebooks, sorted."""
    return sorted((ROOT / "assignments" / "source").glob("*/*.ipynb")) + sorted((ROOT / "notebooks").glob("*.ipynb"))


def cell_text(cell: Any) -> str:
    """The text a code cell printed (stdout streams and text/plain results)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def parse_mse(nb: Any) -> list[dict[str, Any]]:
    """Every "validation MSE X vs mean-image baseline Y" line of the executed notebook."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for line in cell_text(cell).splitlines():
            match = MSE_LINE.search(line)
            if match:
                mse, baseline = float(match.group(1)), float(match.group(2))
                found.append(
                    {
                        "cell": index,
                        "line": line.strip()[:160],
                        "val_mse": mse,
                        "baseline_mse": baseline,
                        "ratio": round(baseline / mse, 3) if mse > 0 else None,
                    }
                )
    return found


def run_notebook(path: Path, quick: bool, timeout: int) -> dict[str, Any]:
    """Execute a copy of ``path`` in a temporary folder; time it and parse what it printed."""
    with tempfile.TemporaryDirectory(prefix="bench_nb_") as tmp:
        workdir = Path(tmp)
        shutil.copy(path, workdir / path.name)
        nb = nbformat.read(workdir / path.name, as_version=4)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": tmp}})
        load = load_average()[0]
        start = time.perf_counter()
        error = None
        try:
            client.execute()
        except CellExecutionError as err:
            error = str(err).strip().splitlines()[-1][:300] if str(err).strip() else type(err).__name__
        except Exception as err:  # a timeout or a dead kernel: report it, go on with the others
            error = f"{type(err).__name__}: {str(err)[:300]}"
        seconds = time.perf_counter() - start
    lines = parse_mse(nb)
    result = {
        "seconds": round(seconds, 1),
        "ok": error is None,
        "error": error,
        "under_3_min": seconds < TARGET_SECONDS,
        "mse_lines": lines,
        "min_ratio": min((m["ratio"] for m in lines if m["ratio"] is not None), default=None),
        "load_average_at_start": load,
        "load_average_at_end": load_average()[0],
    }
    log(f"{path.relative_to(ROOT)}: {seconds:.1f} s, ok={error is None}, ratios {[m['ratio'] for m in lines]} "
        f"(load {load} -> {result['load_average_at_end']})")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="quick budgets (COURSE_QUICK=1) and a small probe")
    parser.add_argument("--only", default="", help="run only notebooks whose path contains this")
    parser.add_argument("--no-probe", action="store_true", help="skip the linear probe")
    parser.add_argument("--no-notebooks", action="store_true", help="only the linear probe")
    parser.add_argument("--probe-frames", type=int, default=3000, help="frames per environment for the probe")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds any one cell may run")
    args = parser.parse_args()
    # A student's run: no grading or test budget, whatever the caller's environment says.
    for var in ("COURSE_QUICK", "NBGRADER_EXECUTION"):
        os.environ.pop(var, None)
    if args.quick:
        os.environ["COURSE_QUICK"] = "1"
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    load_before = conditions()

    results: dict[str, Any] = {}
    if not args.no_notebooks:
        for path in notebooks():
            if args.only in str(path.relative_to(ROOT)):
                results[str(path.relative_to(ROOT))] = run_notebook(path, args.quick, args.timeout)

    probe: dict[str, Any] = {}
    if not args.no_probe:
        settings: dict[str, Any] = {"n_frames": 600, "num_epochs": 3} if args.quick else {
            "n_frames": args.probe_frames}
        for env_id in ("CartPole-v1", "Pendulum-v1"):
            load = load_average()[0]
            start = time.perf_counter()
            r = probe_vae(env_id, **settings)
            probe[env_id] = {
                "r2": {k: round(v, 4) for k, v in r.r2.items()},
                "val_mse": round(r.val_mse, 6),
                "baseline_mse": round(r.baseline_mse, 6),
                "ratio": round(r.ratio, 3),
                "n_train": r.n_train,
                "n_val": r.n_val,
                "train_seconds": round(r.seconds, 1),
                "total_seconds": round(time.perf_counter() - start, 1),
                "settings": r.settings,
                "load_average_at_start": load,
            }
            log(f"probe {env_id}: {probe[env_id]}")

    ran = [r for r in results.values() if r["ok"]]
    emit(
        {
            "benchmark": "notebooks",
            "budget": "quick (COURSE_QUICK=1)" if args.quick else "default",
            "machine": machine(),
            "conditions_before": load_before,
            "conditions_after": conditions(),
            "notebooks": results,
            "linear_probe": probe,
            "targets": {
                "every_notebook_under_3_min": all(r["under_3_min"] for r in results.values()) if results else None,
                "over_3_min": sorted(k for k, r in results.items() if not r["under_3_min"]),
                "every_model_at_least_2x_baseline": all(
                    r["min_ratio"] is None or r["min_ratio"] >= TARGET_RATIO for r in ran
                ) if ran else None,
                "under_2x_baseline": sorted(
                    k for k, r in results.items() if r["min_ratio"] is not None and r["min_ratio"] < TARGET_RATIO
                ),
                "pole_angle_r2_at_least_0.8": probe["CartPole-v1"]["r2"]["pole_angle"] >= TARGET_POLE_R2
                if probe else None,
                "failed": sorted(k for k, r in results.items() if not r["ok"]),
            },
        }
    )


if __name__ == "__main__":
    main()
