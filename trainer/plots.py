"""Figures in the spirit of MALTML's Figure 2, written as PNG (matplotlib, Agg)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {"maltml": "tab:red", "maml": "tab:blue", "oracle": "tab:green", "pretrain": "tab:gray",
         "fo-maltml": "tab:orange", "reptile": "tab:purple", "fomaml": "tab:cyan", "maml-oracle": "tab:olive"}  # fmt: skip


def _save(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def predictions_figure(path: Path, title: str, grid, truth, support, preds: dict[str, list[float]]) -> None:
    """Figure 2a/b: predictions before/after the meta-update and after finetuning vs the true curve."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(grid, truth, color="black", lw=2, label="true goal task")
    styles = ["--", "-.", "-"]
    for (label, ys), ls in zip(preds.items(), styles):
        ax.plot(grid, ys, ls=ls, lw=1.6, label=label.replace("_", " "))
    ax.scatter(support[0], support[1], color="black", marker="^", zorder=5, label="goal support (K)")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)


def error_figure(path: Path, results: dict[str, dict], title: str = "held-out families") -> None:
    """Figure 2c: goal validation MSE vs finetuning steps, 95% bands; the marker at
    step 0 shows each method without the meta-update (the arrow points to with)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, res in results.items():
        color = STYLE.get(name)
        with_ = res["with_meta_update"]["loss"]
        without = res["without_meta_update"]["loss"]
        steps = list(range(len(with_["mean"])))
        lo = [m - c for m, c in zip(with_["mean"], with_["ci95"])]
        hi = [m + c for m, c in zip(with_["mean"], with_["ci95"])]
        (line,) = ax.plot(steps, with_["mean"], marker="o", ms=3, color=color, label=name)
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2)
        ax.annotate("", xy=(0, with_["mean"][0]), xytext=(0, without["mean"][0]),
                    arrowprops={"arrowstyle": "->", "color": line.get_color()})  # fmt: skip
        ax.plot([0], [without["mean"][0]], marker="x", color=line.get_color())
    ax.set_xlabel("finetuning steps on the goal task")
    ax.set_ylabel("validation MSE")
    ax.set_title(f"{title} (x: before meta-update)")
    ax.legend(fontsize=8)
    _save(fig, path)


def curve_figure(path: Path, curves: dict[str, dict], title: str, xlabel: str = "gradient steps") -> None:
    """MSE vs adaptation steps with 95% bands (e.g. the MAML sinusoid benchmark)."""
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for name, c in curves.items():
        steps = list(range(len(c["mean"])))
        (line,) = ax.plot(steps, c["mean"], marker="o", ms=3, label=name)
        ax.fill_between(steps, [m - h for m, h in zip(c["mean"], c["ci95"])],
                        [m + h for m, h in zip(c["mean"], c["ci95"])], color=line.get_color(), alpha=0.2)  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel("MSE")
    ax.set_title(title)
    ax.legend(fontsize=8)
    _save(fig, path)
