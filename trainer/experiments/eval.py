"""`fewtask-train eval`: accuracy against finetuning steps on fixed family episodes.

The paper's protocol (trainer/evaluation/protocol.py) on every held-out family episode of an
HDF5 EpisodeStore, with and without meta-finetuning on the family's L tasks (alpha,
beta, the trained task and meta steps, task steps of the trained derivative order),
then finetuning on the goal tasks with the method's finetuning step size (gamma for
MALTML, alpha for the MAML family: ``Algorithm.finetune_level``). The meta-update sums
(or averages) the L task losses as the checkpoint was trained; checkpoints from before
`--meta-reduction` existed were trained with the mean and evaluate with it. Episodes are fixed
files and nothing is random, so two runs give identical numbers. eval.json is the one
results schema (trainer/evaluation/report.py), with what was evaluated under "extra".
"""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from fewtask_data import EpisodeStore, FewtaskError, io
from trainer.algorithms import algorithm_class, make_algorithm, resolve_impl
from trainer.core.functional import at_step
from trainer.core.step_sizes import level_lrs
from trainer.domains.vision.pretrain import with_fresh_head
from trainer.evaluation import plots, report
from trainer.evaluation.protocol import episode_curves, own_step_sizes, step_size_record
from trainer.models import build_from_spec, signature
from trainer.training import checkpoint as ckpt
from trainer.training.distributed import device_for

EXPERIMENT = "fewtask-train eval: a fit checkpoint on fixed held-out family episodes"


def load_trained(checkpoint: Path, device: torch.device, ways: int | None = None) -> tuple[torch.nn.Module, dict, dict, dict]:
    """(model with trained weights, its fit record, log step sizes, the raw checkpoint).
    A method trained on flat batches (pretrain) gets a fresh zero ``ways``-way head
    (see trainer/domains/vision/pretrain.py)."""
    path = checkpoint / ckpt.CHECKPOINT_NAME if checkpoint.is_dir() else checkpoint
    payload = ckpt.load(path)
    record = payload.get("config", {}).get("extra", {})
    if "model" not in record or "algorithm" not in record:
        raise FewtaskError(f"{path} was not written by `fewtask-train fit` (no model spec); evaluate it with its own command")
    if algorithm_class(record["algorithm"]["name"]).flat_training and ways is not None:
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


def evaluate_checkpoint(checkpoint: Path, episodes: Path, steps: int = 10, batch_size: int = 8, device: str = "cpu",
                        finetune_lr: float | None = None, impl: str = "auto", meta_reduction: str | None = None,
                        progress: bool = False, curves_out: Path | None = None,
                        protocols: tuple[str, ...] = report.PROTOCOLS) -> dict:
    """Run the protocol on a `fit` checkpoint; returns eval.json's content (module doc).
    The meta-update reduces the L task losses as the checkpoint was trained (``mean`` for
    checkpoints from before the option), unless ``meta_reduction`` says otherwise. ``progress``:
    a bar on stderr over the episodes. ``curves_out``: also save the per-episode curves there
    (torch.save of `episode_curves`), for paired comparisons between checkpoints. ``protocols``:
    the ones to run (both by default; `tune` scores only the one a method is meant for)."""
    if steps < 0 or batch_size < 1:
        raise FewtaskError("--steps must be >= 0 and --batch-size >= 1")
    dev = device_for(device)
    impl = resolve_impl(impl, dev)
    with EpisodeStore(Path(episodes)) as store:
        ways = store.shape.ways
    model, record, sizes, payload = load_trained(Path(checkpoint), dev, ways)
    hp = {k: v for k, v in record["algorithm"].items() if k not in ("name", "compile", "impl")}
    hp["meta_reduction"] = meta_reduction or hp.get("meta_reduction", "mean")
    algo = make_algorithm(record["algorithm"]["name"], model, **hp)
    if finetune_lr is not None and not finetune_lr > 0:
        raise FewtaskError(f"--finetune-lr must be positive, got {finetune_lr}")
    sizes = {k: v.to(dev) for k, v in sizes.items()}
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    with EpisodeStore(Path(episodes)) as store:
        check_episodes_fit(store, record["model"])
        batches = (batch.to(dev) for batch in store.batches(batch_size))
        curves = episode_curves(algo, params, sizes, buffers, batches, steps, impl, progress=progress, total=len(store),
                                finetune_lr=finetune_lr, protocols=protocols)  # fmt: skip
        store_info, shape, count = store.info, store.shape.as_dict(), len(store)
    if curves_out is not None:
        ckpt.save(Path(curves_out), curves)  # atomic torch.save
    ft_lrs = at_step(level_lrs(own_step_sizes(algo, sizes, finetune_lr), "gamma"), 0)
    name = record["algorithm"]["name"]
    seed = record.get("fit", {}).get("seed", 0)
    extra = {
        "checkpoint": str(checkpoint), "episodes_file": str(episodes), "episodes": count, "episode_shape": shape,
        "episodes_info": store_info, "algorithm": record["algorithm"], "model": record["model"],
        "batch_norm": record["model"].get("bn"), "trained_steps": payload["step"], "finetune_level": algo.finetune_level,
        "impl": impl, "meta_reduction": algo.meta_reduction,
        "finetune_lr_mean": float(torch.stack(list(ft_lrs.values())).mean()),
        "step_sizes": step_size_record(algo, sizes),
        "evaluation": {"episodes_file": str(episodes), "episodes": count, "steps": steps},  # what `combine` compares
    }  # fmt: skip
    config = {"steps": steps, "batch_size": batch_size, "device": device, "finetune_lr": finetune_lr, "impl": impl,
              "meta_reduction": meta_reduction}  # fmt: skip
    return report.results(EXPERIMENT, config, "held-out family episode", {seed: {name: curves}}, range(steps + 1),
                          {name: [{"seed": seed, "steps": payload["step"]}]}, extra=extra)  # fmt: skip


def eval_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint.pt from `fewtask-train fit` (or its folder)"),
    episodes: Path = typer.Option(..., "--episodes", help="fixed evaluation episodes (HDF5 from `fewtask-data episodes`)"),
    out: Path = typer.Option(None, "--out", help="results folder (default: the checkpoint's folder)"),
    steps: int = typer.Option(10, help="finetuning steps: accuracy is reported after 0..STEPS"),
    batch_size: int = typer.Option(8, help="episodes evaluated together"),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto"),
    finetune_lr: float = typer.Option(None, help="override the goal finetuning step size (default: trained gamma, alpha for MAML-like)"),
    impl: str = typer.Option("auto", help="auto (loop on CPU, vmap on GPU), vmap or loop: same numbers, different speed"),
    meta_reduction: str = typer.Option(None, help="override Eq. 2's reduction of the L task losses in the meta-update: "
                                                  "sum or mean (default: as trained; mean for checkpoints without it)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar over the episodes (stderr)"),
) -> None:
    """Accuracy vs finetuning steps (95% CI) with and without meta-finetuning; writes eval.json and eval.png."""
    folder = out or (checkpoint if checkpoint.is_dir() else checkpoint.parent)
    folder.mkdir(parents=True, exist_ok=True)
    # the per-episode curves beside eval.json: `fewtask-train combine` pairs methods evaluated apart
    results = evaluate_checkpoint(checkpoint, episodes, steps, batch_size, device, finetune_lr, impl, meta_reduction,
                                  progress, curves_out=folder / report.CURVES_FILE)  # fmt: skip
    io.write_json(folder / "eval.json", results)
    count = results["extra"]["episodes"]
    plots.accuracy_figure(folder / "eval.png", results["methods"], results["steps"], count)
    res = next(iter(results["methods"].values()))
    for key in report.PROTOCOLS:
        acc = res[key]["accuracy"]
        typer.echo(f"{key.replace('_', ' ')}: {report.cell(acc, 0, digits=4)} at 0 steps, "
                   f"{report.cell(acc, steps, digits=4)} at {steps} steps")  # fmt: skip
    typer.echo(f"{count} episodes; results in {folder / 'eval.json'} and {folder / 'eval.png'}")
