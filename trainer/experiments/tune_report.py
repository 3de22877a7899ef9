"""`tune`'s report: per method and stage the optimisation history and the parameter
importances as PNGs (Optuna's matplotlib visualisations), and report.md with the best
values and where best.json is."""

from __future__ import annotations

import warnings
from pathlib import Path

from fewtask_data import io


def stage_figures(out: Path, storage: str, method: str, stage: str) -> list[str]:
    """The stage's PNGs (paths relative to ``out``); importances need 2 or more finished trials
    with a varying parameter, so they may be missing (noted in the report)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as vis

    study = optuna.load_study(study_name=f"{method}:{stage}", storage=storage)
    written = []
    for kind, plot in (("history", vis.plot_optimization_history), ("importance", vis.plot_param_importances)):
        name = f"{method}/{stage}-{kind}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
                ax = plot(study)
            ax.figure.set_size_inches(7, 4)
            ax.figure.tight_layout()
            ax.figure.savefig(out / name, dpi=80)
            plt.close(ax.figure)
            written.append(name)
        except (ValueError, RuntimeError, ZeroDivisionError):
            plt.close("all")
    return written


def write_report(out: Path, summary: dict, storage: str) -> Path:
    """OUT/report.md and the PNGs it shows, from tune.json's ``summary`` and the studies in ``storage``."""
    lines = [f"# tune {summary['experiment']}", "",
             "Scores are on validation families (accuracy for images, mean return for navigation, minus the MSE for "
             "sinusoids and continual problems), each method as "
             "it is meant to be used; stages run in order, each with the earlier stages' best fixed.", ""]  # fmt: skip
    for method, rec in summary["methods"].items():
        lines += [f"## {method}", "", "| stage | finished trials | best score | best values |", "|---|---|---|---|"]
        figures = []
        for stage, s in rec["stages"].items():
            if s.get("skipped"):
                lines.append(f"| {stage} | skipped: {s['skipped']} | | |")
                continue
            values = ", ".join(f"{k}={_fmt(v)}" for k, v in s["best_params"].items())
            lines.append(f"| {stage} | {s['finished']} | {_fmt(s['best_value'])} | {values} |")
            figures += stage_figures(out, storage, method, stage)
        lines += ["", f"Config: `{method}/best.json`.", ""] + [f"![{f}]({f})" for f in figures] + [""]
    path = out / "report.md"
    io.write_bytes(path, "\n".join(lines).encode())
    return path


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
