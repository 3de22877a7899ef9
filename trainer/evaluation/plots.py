"""Every figure the commands write, as PNG (matplotlib, Agg), saved atomically: MALTML's
Figure 2 panels (`sinusoid`), MSE vs steps (`sinusoid-maml`), accuracy vs finetuning
steps (`eval`, `demo`), returns and continual MSE. Results come in the one report schema
(trainer/evaluation/report.py): ``methods[name][protocol][metric]`` summaries."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import torch

from fewtask_data import io
from trainer.evaluation.report import WITH, WITHOUT

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {"maltml": "tab:red", "maml": "tab:blue", "oracle": "tab:green", "pretrain": "tab:gray",
         "fo-maltml": "tab:orange", "reptile": "tab:purple", "fomaml": "tab:cyan", "maml-oracle": "tab:olive"}  # fmt: skip


def _save(fig, path: Path, **savefig) -> None:
    """Write ``fig`` to ``path`` through a temp file and a rename (never half a PNG)."""
    tmp = io.temp_path(path)
    fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **({"dpi": 110, "bbox_inches": "tight"} | savefig))
    plt.close(fig)
    tmp.replace(path)


def predictions_figure(path: Path, title: str, grid, truth, support, preds: dict[str, list]) -> None:
    """Figure 2a/b: predictions before/after the meta-update and after finetuning vs the true curve.
    A prediction given as one list per training seed is drawn as the mean over seeds with
    the seeds' range shaded."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(grid, truth, color="black", lw=2, label="true goal task")
    styles = ["--", "-.", "-"]
    for (label, ys), ls in zip(preds.items(), styles):
        per_seed = torch.tensor(ys, dtype=torch.float64).reshape(-1, len(grid))
        name = label.replace("_", " ") + (f" (mean of {len(per_seed)} seeds, range)" if len(per_seed) > 1 else "")
        (line,) = ax.plot(grid, per_seed.mean(0), ls=ls, lw=1.6, label=name)
        if len(per_seed) > 1:
            ax.fill_between(grid, per_seed.min(0).values, per_seed.max(0).values, color=line.get_color(), alpha=0.15)
    ax.scatter(support[0], support[1], color="black", marker="^", zorder=5, label="goal support (K)")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)


def error_figure(path: Path, methods: dict[str, dict], title: str = "held-out families") -> None:
    """Figure 2c: goal validation MSE vs finetuning steps after the meta-update, with 95%
    bands (over seeds when there are several: each seed's curve is drawn thinly); the x at
    step 0 is each method without the meta-update (the arrow points to with)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, res in methods.items():
        with_, without = res[WITH]["loss"], res[WITHOUT]["loss"]
        steps = list(range(len(with_["mean"])))
        (line,) = ax.plot(steps, with_["mean"], marker="o", ms=3, color=STYLE.get(name), label=name)
        _band(ax, steps, with_, line.get_color())
        for curve in with_["per_seed"] if len(with_["per_seed"]) > 1 else []:
            ax.plot(steps, curve, lw=0.6, alpha=0.5, color=line.get_color())
        ax.annotate("", xy=(0, with_["mean"][0]), xytext=(0, without["mean"][0]),
                    arrowprops={"arrowstyle": "->", "color": line.get_color()})  # fmt: skip
        ax.plot([0], [without["mean"][0]], marker="x", color=line.get_color())
    # Log scale: MSE spans 1e-3 (oracle) to a method wrecked by the meta-update; curves
    # more than 10x above the worst no-meta-update start are cut off rather than
    # flattening every other curve.
    ceiling = 10 * max(r[WITHOUT]["loss"]["mean"][0] for r in methods.values())
    ax.set_yscale("log")
    ax.set_ylim(top=ceiling)
    ax.set_xlabel("finetuning steps on the goal task")
    ax.set_ylabel("validation MSE (log scale)")
    ax.set_title(f"{title} (x: before meta-update)")
    ax.legend(fontsize=8)
    _save(fig, path)


def _band(ax, xs, summary: dict, color) -> None:
    """A summary's 95% interval (mean ± ci95) as a shaded band."""
    mean, half = torch.tensor(summary["mean"], dtype=torch.float64), torch.tensor(summary["ci95"], dtype=torch.float64)
    ax.fill_between(xs, (mean - half).tolist(), (mean + half).tolist(), color=color, alpha=0.2)


def curve_figure(path: Path, curves: dict[str, dict], title: str, xlabel: str = "gradient steps",
                 ylabel: str = "MSE") -> None:  # fmt: skip
    """MSE (or ``ylabel``) vs adaptation steps with 95% bands (the MAML sinusoid and 2D
    navigation benchmarks)."""
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for name, c in curves.items():
        steps = list(range(len(c["mean"])))
        (line,) = ax.plot(steps, c["mean"], marker="o", ms=3, label=name)
        _band(ax, steps, c, line.get_color())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    _save(fig, path)


def accuracy_figure(path: Path, methods: dict[str, dict], steps: list[int], units: int, title: str = "") -> None:
    """Accuracy vs finetuning steps, with and without the meta-update, for each method."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (label, res) in enumerate(methods.items()):
        color = f"C{i}"
        for key, style, tag in ((WITHOUT, "--", "no meta-update"), (WITH, "-", "meta-update")):
            acc = res[key]["accuracy"]
            mean, ci = torch.tensor(acc["mean"]), torch.tensor(acc["ci95"]).nan_to_num(0.0)
            ax.plot(steps, mean, style, color=color, label=f"{label} ({tag})")
            ax.fill_between(steps, mean - ci, mean + ci, color=color, alpha=0.15)
    ax.set_xlabel("finetuning steps on the goal task")
    ax.set_ylabel("goal validation accuracy")
    ax.set_title(title or f"held-out family episodes (n={units}, 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path, dpi=120, bbox_inches=None)


def function_bars_figure(path: Path, results: dict[str, dict], published: dict[str, float], title: str) -> None:
    """Continual regression: per-function MSE bars (95% whiskers) per method (``results[name]``
    holds summaries ``per_function`` and ``mse``), and each method's mean; dashed lines mark
    the published means (docs/continual.md)."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.0, 3.4), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / max(len(results), 1)
    for i, (name, r) in enumerate(results.items()):
        pf = r["per_function"]
        xs = [f + i * width for f in range(len(pf["mean"]))]
        ax.bar(xs, pf["mean"], width, yerr=pf["ci95"], label=name, color=STYLE.get(name), capsize=2)
        bx.bar(i, r["mse"]["mean"], yerr=r["mse"]["ci95"], color=STYLE.get(name), capsize=3)
        if name in published:
            bx.plot([i - 0.4, i + 0.4], [published[name]] * 2, "k--", lw=1)
    ax.set_xlabel("function (order learned)")
    ax.set_ylabel("MSE after the online pass")
    ax.set_title(title)
    ax.legend(fontsize=8)
    bx.set_xticks(range(len(results)), list(results), rotation=30, fontsize=8)
    bx.set_title("mean (dashed: published)")
    _save(fig, path)


def meta_curve_figure(path: Path, curves: dict[str, list[dict]], published: dict[str, float]) -> None:
    """Evaluation MSE (95% band) against meta-training steps, published means dashed."""
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for name, points in curves.items():
        xs = [p["steps"] for p in points]
        (line,) = ax.plot(xs, [p["mean"] for p in points], marker="o", ms=3, label=name, color=STYLE.get(name))
        _band(ax, xs, {"mean": [p["mean"] for p in points], "ci95": [p["ci95"] for p in points]}, line.get_color())
        if name in published:
            ax.axhline(published[name], color=line.get_color(), ls="--", lw=1)
    ax.set_xlabel("meta-training steps")
    ax.set_ylabel("mean MSE after 10 functions")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    _save(fig, path)


def learning_figure(path: Path, budgets: dict[str, list[dict]], title: str) -> None:
    """Mean post-update training return per iteration (first seed of each trained method)."""
    curves = {m: {"mean": b[0]["learning_curve"], "ci95": [0.0] * len(b[0]["learning_curve"])}
              for m, b in budgets.items() if b and b[0].get("learning_curve")}  # fmt: skip
    if curves:
        curve_figure(path, curves, title, "meta-iteration", "training return after adaptation")


def step_size_figure(path: Path, records: dict[str, dict], title: str = "step sizes") -> None:
    """One bar chart per level (alpha, beta, gamma): each parameter tensor's step size per
    method (``records[method]`` from `protocol.step_size_record`); log scale, since learned
    sizes span orders of magnitude."""
    levels = ("alpha", "beta", "gamma")
    fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.6), sharey=True)
    for ax, level in zip(axes, levels):
        names = list(next(iter(records.values()))["per_tensor"][level])
        width = 0.8 / max(len(records), 1)
        for i, (method, rec) in enumerate(records.items()):
            values = [rec["per_tensor"][level][n] for n in names]
            tag = " (learned)" if rec["learned"] else ""
            ax.bar([x + i * width for x in range(len(names))], values, width, color=STYLE.get(method), label=method + tag)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names, rotation=60, fontsize=7)
        ax.set_yscale("log")
        ax.set_title(level)
    axes[0].set_ylabel("step size")
    axes[-1].legend(fontsize=7)
    fig.suptitle(title)
    _save(fig, path)


PAIR_LABELS = {"theta_to_theta_prime": "θ→θ'\nmeta", "theta_prime_to_phi": "θ'→φ\ngoal", "theta_to_phi": "θ→φ\nboth"}


def similarity_heatmaps(path: Path, methods: dict[str, dict], measure: str, pairs: list[str],
                        layers: dict[str, list[str]] | None = None) -> None:  # fmt: skip
    """`fewtask-train analyze`: per method a layer x pair heatmap of ``measure`` (summaries
    ``methods[m][pair][layer]``), methods side by side on one colour scale [0, 1], each
    cell annotated with its mean and 95% interval over families. ``layers[m]``: the rows'
    order (default: the summaries' order; analysis.json stores it, its keys are sorted)."""
    fig, axes = plt.subplots(1, len(methods), figsize=(2.6 + 2.6 * len(methods), 1.2 + 0.55 * _rows(methods)),
                             squeeze=False)  # fmt: skip
    image, previous = None, None
    for ax, (name, per_pair) in zip(axes[0], methods.items()):
        rows = layers[name] if layers else list(per_pair[pairs[0]])
        grid = torch.tensor([[per_pair[p][layer]["mean"] for p in pairs] for layer in rows], dtype=torch.float64)
        image = ax.imshow(grid.numpy(), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        for i, layer in enumerate(rows):
            for j, p in enumerate(pairs):
                s = per_pair[p][layer]
                ax.text(j, i, f"{s['mean']:.2f}\n±{s['ci95']:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if s["mean"] > 0.6 else "white")  # fmt: skip
        ax.set_xticks(range(len(pairs)), [PAIR_LABELS.get(p, p) for p in pairs], fontsize=7)
        ax.set_yticks(range(len(rows)), rows if rows != previous else [], fontsize=7)  # labelled once per run of equal layers
        previous = rows
        ax.set_title(name, fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label=measure)
    fig.suptitle(f"{measure} between parameter points, per layer (mean ± 95% over families)", fontsize=9, y=1.04)
    _save(fig, path)


def _rows(methods: dict[str, dict]) -> int:
    return max(len(next(iter(per_pair.values()))) for per_pair in methods.values())
