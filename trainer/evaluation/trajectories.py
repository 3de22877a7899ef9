"""The navigation figures: agent paths inside a family's crop before and after the
meta-update (returns vs steps reuse trainer.evaluation.plots.curve_figure)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.patches import Rectangle

from trainer.evaluation.plots import _save, plt  # trainer.evaluation.plots selects the Agg backend first


def trajectory_figure(path: Path, crop: list[float], meta_goals: list[list[float]], goal: list[float],
                      paths: dict[str, list], title: str) -> None:  # fmt: skip
    """The crop (x0, y0, width, height), its L meta-task goals (crosses), the goal task
    (star), and for each label a few sampled paths: the positions the agent acted from
    (from the origin; steps after the goal was reached are left out)."""
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    ax.add_patch(Rectangle(crop[:2], crop[2], crop[3], fill=False, ls="--", color="black", lw=1, label="family crop"))
    for i, (label, trajs) in enumerate(paths.items()):
        for j, traj in enumerate(trajs):
            xs, ys = zip(*traj)
            ax.plot(xs, ys, color=f"C{i}", lw=1, alpha=0.7, label=label if j == 0 else None)
    ax.scatter(*zip(*meta_goals), marker="x", color="gray", label="meta-task goals (L)")
    ax.scatter([goal[0]], [goal[1]], marker="*", s=160, color="red", zorder=5, label="goal task")
    ax.set_xlim(-0.6, 0.6)
    ax.set_ylim(-0.6, 0.6)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    _save(fig, path)
