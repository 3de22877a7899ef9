"""`fewtask-train eval`: accuracy against finetuning steps on fixed family episodes.

The paper's protocol, per held-out family episode (from an HDF5 EpisodeStore):

- without meta-finetuning: theta -> finetune on each goal task's support for
  s = 0..N steps (step size gamma) -> accuracy on its validation set;
- with meta-finetuning: theta -> V_beta on the family's L tasks (alpha, beta, the
  trained task and meta steps, task steps of the trained derivative order) -> the
  same finetuning curve (`trainer.evaluate.family_curves`).

Per episode the accuracy is averaged over its goal tasks; the figure is the mean
over episodes with a 95% interval (1.96 standard errors). `meta_finetuning_gain` is
the paired difference (with - without meta-finetuning) over the same episodes. Episodes are fixed
files and nothing is random, so two runs give identical numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import typer

from fewtask_data import EpisodeStore, FewtaskError
from fewtask_data.io import temp_path, write_json
from trainer import checkpoint as ckpt
from trainer.algorithms import level_lrs, make_algorithm, resolve_impl
from trainer.distributed import device_for
from trainer.evaluate import family_curves, summarize
from trainer.fit import build_from_spec
from trainer.models import signature
from trainer.pretrain_vision import with_fresh_head

# Algorithms whose goal-task finetuning uses gamma; the others finetune with alpha.
GAMMA_FINETUNED = ("maltml", "fo-maltml")


def load_trained(checkpoint: Path, device: torch.device, ways: int | None = None) -> tuple[torch.nn.Module, dict, dict, dict]:
    """(model with trained weights, its fit record, log step sizes, the raw checkpoint).
    A pretrained classifier gets a fresh zero ``ways``-way head (see trainer/pretrain_vision.py)."""
    path = checkpoint / ckpt.CHECKPOINT_NAME if checkpoint.is_dir() else checkpoint
    payload = ckpt.load(path)
    record = payload.get("config", {}).get("extra", {})
    if "model" not in record or "algorithm" not in record:
        raise FewtaskError(f"{path} was not written by `fewtask-train fit` (no model spec); evaluate it with its own command")
    if record["algorithm"]["name"] == "pretrain" and ways is not None:
        trained = build_from_spec(record["model"])
        ckpt.load(path, signature(trained))  # a clear error if the weights do not fit the spec
        model = with_fresh_head(build_from_spec({**record["model"], "ways": ways}), payload["model"])
        record = {**record, "model": {**record["model"], "ways": ways, "pretrained_classes": record["model"]["ways"]}}
        return model.to(device).eval(), record, payload["step_sizes"], payload
    model = build_from_spec(record["model"])
    ckpt.load(path, signature(model))  # a clear error if the weights do not fit the spec
    model.load_state_dict(payload["model"])
    return model.to(device).eval(), record, payload["step_sizes"], payload


def check_episodes_fit(store: EpisodeStore, spec: dict) -> None:
    """The episodes must have the model's number of ways and image shape."""
    if store.shape.ways != spec["ways"]:
        raise FewtaskError(
            f"{store.path} holds {store.shape.ways}-way episodes but the model has {spec['ways']} outputs; "
            "write episodes with the same --ways"
        )
    x = store.batch(0, 1).goal_x
    image = tuple(x.shape[3:])
    want_c, side = spec["in_channels"], spec["image_size"]
    ok = image in ((want_c, side, side),) or (want_c == 1 and image == (side, side))
    if not ok:
        raise FewtaskError(
            f"{store.path} has images of shape {image}, the model expects {(want_c, side, side)}; "
            "use episodes from the dataset the model was trained on"
        )


def finetune_sizes(sizes: dict[str, torch.Tensor], level: str, override: float | None) -> dict[str, torch.Tensor]:
    """Log step sizes whose gamma level holds the goal-finetuning step (the trained gamma,
    or alpha for the MAML family, or ``override``): `family_curves` finetunes with gamma."""
    out = dict(sizes)
    for key, value in sizes.items():
        lv, _, name = key.partition(":")
        if lv == level:
            out[f"gamma:{name}"] = value if override is None else torch.full_like(value, math.log(override))
    return out


def evaluate(checkpoint: Path, episodes: Path, steps: int = 10, batch_size: int = 8, device: str = "cpu",
             finetune_lr: float | None = None, impl: str = "auto") -> dict:
    """Run the protocol; returns the results dict (see module doc)."""
    if steps < 0 or batch_size < 1:
        raise FewtaskError("--steps must be >= 0 and --batch-size >= 1")
    dev = device_for(device)
    impl = resolve_impl(impl, dev)
    with EpisodeStore(Path(episodes)) as store:
        ways = store.shape.ways
    model, record, sizes, payload = load_trained(Path(checkpoint), dev, ways)
    hp = {k: v for k, v in record["algorithm"].items() if k not in ("name", "compile", "impl")}
    algo = make_algorithm(record["algorithm"]["name"], model, **hp)
    level = "gamma" if algo.name in GAMMA_FINETUNED else "alpha"
    if finetune_lr is not None and not finetune_lr > 0:
        raise FewtaskError(f"--finetune-lr must be positive, got {finetune_lr}")
    sizes = finetune_sizes({k: v.to(dev) for k, v in sizes.items()}, level, finetune_lr)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    with EpisodeStore(Path(episodes)) as store:
        check_episodes_fit(store, record["model"])
        curves: dict[bool, list[tuple[torch.Tensor, torch.Tensor]]] = {False: [], True: []}
        for batch in store.batches(batch_size):
            batch = batch.to(dev)
            for meta_update in (False, True):
                loss, acc = family_curves(algo, params, sizes, buffers, batch, steps, meta_update, impl)
                curves[meta_update].append((loss.cpu(), acc.cpu()))
        n, store_info, shape = len(store), store.info, store.shape.as_dict()

    # Per-episode curves [episodes, steps + 1], for each protocol.
    losses = {m: torch.cat([c[0] for c in curves[m]]) for m in curves}
    accs = {m: torch.cat([c[1] for c in curves[m]]) for m in curves}

    def summary(meta_update: bool) -> dict:
        loss, acc = summarize(losses[meta_update]), summarize(accs[meta_update])
        return {"accuracy": acc["mean"], "ci95": acc["ci95"], "loss": loss["mean"], "loss_ci95": loss["ci95"]}

    gain = summarize(accs[True] - accs[False])  # paired over the same episodes: tighter than two intervals

    ft_lrs = level_lrs(sizes, "gamma")
    return {
        "checkpoint": str(checkpoint),
        "episodes_file": str(episodes),
        "episodes": n,
        "episode_shape": shape,
        "episodes_info": store_info,
        "algorithm": record["algorithm"],
        "model": record["model"],
        "batch_norm": record["model"].get("bn"),
        "trained_steps": payload["step"],
        "finetune_level": level,
        "impl": impl,
        "finetune_lr_mean": float(torch.stack(list(ft_lrs.values())).mean()),
        "steps": list(range(steps + 1)),
        "without_meta_finetuning": summary(False),
        "with_meta_finetuning": summary(True),
        "meta_finetuning_gain": {"accuracy": gain["mean"], "ci95": gain["ci95"]},
    }


def plot_curves(results: dict[str, dict], path: Path, title: str = "") -> None:
    """Accuracy vs finetuning steps, with and without meta-finetuning, for each labelled result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (label, res) in enumerate(results.items()):
        color = f"C{i}"
        for key, style, tag in (("without_meta_finetuning", "--", "no meta-ft"), ("with_meta_finetuning", "-", "meta-ft")):
            acc, ci = torch.tensor(res[key]["accuracy"]), torch.tensor(res[key]["ci95"]).nan_to_num(0.0)
            ax.plot(res["steps"], acc, style, color=color, label=f"{label} ({tag})")
            ax.fill_between(res["steps"], acc - ci, acc + ci, color=color, alpha=0.15)
    ax.set_xlabel("finetuning steps on the goal task")
    ax.set_ylabel("goal validation accuracy")
    n = next(iter(results.values()))["episodes"]
    ax.set_title(title or f"held-out family episodes (n={n}, 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = temp_path(path)
    fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    tmp.replace(path)


def eval_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint.pt from `fewtask-train fit` (or its folder)"),
    episodes: Path = typer.Option(..., "--episodes", help="fixed evaluation episodes (HDF5 from `fewtask-data episodes`)"),
    out: Path = typer.Option(None, "--out", help="results folder (default: the checkpoint's folder)"),
    steps: int = typer.Option(10, help="finetuning steps: accuracy is reported after 0..STEPS"),
    batch_size: int = typer.Option(8, help="episodes evaluated together"),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto"),
    finetune_lr: float = typer.Option(None, help="override the goal finetuning step size (default: trained gamma, alpha for MAML-like)"),
    impl: str = typer.Option("auto", help="auto (loop on CPU, vmap on GPU), vmap or loop: same numbers, different speed"),
) -> None:
    """Accuracy vs finetuning steps (95% CI) with and without meta-finetuning; writes eval.json and eval.png."""
    results = evaluate(checkpoint, episodes, steps, batch_size, device, finetune_lr, impl)
    folder = out or (checkpoint if checkpoint.is_dir() else checkpoint.parent)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "eval.json", results)
    plot_curves({results["algorithm"]["name"]: results}, folder / "eval.png")
    for key in ("without_meta_finetuning", "with_meta_finetuning"):
        r = results[key]
        typer.echo(
            f"{key.replace('_', ' ')}: {r['accuracy'][0]:.4f} ± {r['ci95'][0]:.4f} at 0 steps, "
            f"{r['accuracy'][-1]:.4f} ± {r['ci95'][-1]:.4f} at {steps} steps"
        )
    typer.echo(f"{results['episodes']} episodes; results in {folder / 'eval.json'} and {folder / 'eval.png'}")
