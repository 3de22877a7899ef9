"""Snapshot the Optuna studies of `fewtask-train tune` run folders, finished or not, for the
record: one CSV of trials per study (number, state, value, params, start and end times) and
a markdown table of each study's best trial. `tune` itself writes tune.json and report.md
only when every method is done; a search spread over several sessions needs this between them.

    .venv/bin/python scripts/study_snapshot.py runs/tuned/tune-omniglot/maml runs/tuned/tune-omniglot/maltml \\
        --out docs/results/omniglot-tuned/studies
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

import optuna


def snapshot(folder: Path, out: Path) -> list[str]:
    """Write ``out/<study>.csv`` for every study in ``folder/study.db``; return markdown rows."""
    db = folder / "study.db"
    if not db.exists():
        sys.exit(f"error: no study.db in {folder}; give the --out folder of a `fewtask-train tune` run")
    storage = f"sqlite:///{db}"
    rows = []
    for name in sorted(optuna.get_all_study_names(storage)):
        study = optuna.load_study(study_name=name, storage=storage)
        names = sorted({k for t in study.trials for k in t.params})
        with open(out / f"{name.replace(':', '-')}.csv", "w", newline="") as f:
            table = csv.writer(f)
            table.writerow(["number", "state", "value", *names, "start", "complete"])
            for t in study.trials:
                table.writerow([t.number, t.state.name, t.value, *(t.params.get(k) for k in names), t.datetime_start,
                                t.datetime_complete])  # fmt: skip
        states = Counter(t.state.name for t in study.trials)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = max(done, key=lambda t: t.value) if done else None
        shown = "none yet" if best is None else f"{best.value:.4f} (trial {best.number}: {best.params})"
        rows.append(f"| {name} | {', '.join(f'{k} {v}' for k, v in sorted(states.items()))} | {shown} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path, help="tune --out folders (each with study.db)")
    p.add_argument("--out", type=Path, required=True, help="folder for the CSVs and studies.md")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [row for folder in args.folders for row in snapshot(folder, args.out)]
    table = ["| study | trials | best validation score |", "|---|---|---|", *rows]
    (args.out / "studies.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
