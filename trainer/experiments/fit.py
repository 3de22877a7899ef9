"""`fewtask-train fit`: meta-train on image families streamed from shards.

    shards (FamilyStream, split by rank and DataLoader worker)
      -> FamilyBatch -> algorithm.outer_grads -> [all-reduce over ranks] -> Adam

Configuration (`FitConfig`, whose fields are the command's options) and wiring; the
command itself is trainer/experiments/fit.py. Runs as one process or under
``torchrun --nproc_per_node N`` (see trainer/training/distributed.py). The output folder holds
``checkpoint.pt``, ``metrics.jsonl`` and ``config.json`` (every setting, the model spec,
the batch-norm policy and the data's identity), which `fewtask-train eval` reads back.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator

import typer
from torch.utils.data import DataLoader

from fewtask_data import (
    EpisodeShape,
    FamilyBatch,
    FewtaskError,
    FamilyStream,
    FlatStream,
    io,
    collate,
    load_manifest,
)
from trainer.algorithms import ALGORITHMS, algorithm_class, make_algorithm, resolve_impl
from trainer.domains.vision.pretrain import flat_batch_source
from trainer.experiments.options import StabilizerOptions, config_option, option, run_option, shape_option, typer_command
from trainer.models import build_from_spec, image_geometry, model_spec
from trainer.training import distributed as dist_util
from trainer.training.checkpoint import seed_everything
from trainer.training.loop import TrainConfig, train

CONFIG_NAME = "config.json"


@dataclass(kw_only=True)
class TrainSettings(StabilizerOptions):
    """How `fit` trains, with its defaults and help: the options of `fewtask-train fit`
    after --data, --out and --algo, shared by the demo (`DemoConfig`)."""

    split: str = option("train", "split whose families train the model")
    # The episode shape: the options of `fewtask-data episodes`, with fit's defaults.
    ways: int = shape_option("ways")
    shots: int = shape_option("shots")
    queries: int = shape_option("queries")
    val: int = shape_option("val", 5)
    meta_tasks: int = shape_option("meta_tasks", 5)
    goal_tasks: int = shape_option("goal_tasks")
    batch: int = option(4, "families per outer step (per process)")
    steps: int = run_option("steps", 1000, "outer steps")
    model: str = option("conv4", "conv4 (Finn et al.) or resnet12")
    hidden: int = option(64, "conv4 filters (ResNet-12: first block width, scaled 64-160-320-640)")
    bn: str = option("task", "batch norm: 'task' (statistics of the current task's batch, as MAML) or 'none'")
    alpha: float = option(0.4, "task step size (inner loop; MAML's alpha)")
    # A meta step moves along a whole meta-gradient: much smaller than alpha.
    beta: float = option(0.05, "meta step size (meta-finetuning on the L tasks)")
    gamma: float = option(0.4, "goal finetuning step size")
    # Options the trainer commands share (options.RUN_OPTIONS), in fit's wording.
    task_steps: int = run_option("task_steps", help="r: task steps")
    meta_steps: int = run_option("meta_steps", help="m: meta steps")
    goal_steps: int = run_option("goal_steps", help="finetuning steps on a goal task during training")
    order: int = run_option("order", help="MALTML derivative order: 3 exact, 2, 1 first order (MAML: 1 = FOMAML)")
    meta_reduction: str = run_option("meta_reduction", help="Eq. 2's meta-finetuning step over the L task losses: sum "
                                     "(as the paper) or mean (an L times smaller step; runs from before this option)")  # fmt: skip
    learn_step_sizes: bool = run_option("learn_step_sizes", help="learn alpha, beta, gamma per parameter tensor")
    per_step_step_sizes: bool = run_option("per_step_step_sizes")
    per_step_bn: bool = option(False, "MAML++'s per-step batch-norm weights: one row per inner step (as many as the "
                                      "larger of --task-steps and --goal-steps, then the last row)")
    lr: float = run_option("lr", help="Adam learning rate (outer loop)")
    seed: int = run_option("seed", help="seed for the model and the stream")
    episodes_per_visit: int = option(2, "episodes drawn from a family each time it is loaded")
    workers: int = option(0, "DataLoader worker processes streaming families")
    device: str = option("cpu", "cpu, cuda, cuda:N or auto")
    compile: bool = run_option("compile", False, "torch.compile the outer step")
    impl: str = run_option("impl", help="vmap (tasks batched), loop (plain autograd, task by task; faster for conv4-64 "
                                        "at 28x28 on CPU) or auto (loop on CPU where the algorithm has one, else vmap)")  # fmt: skip
    log_every: int = run_option("log_every", 50, "steps between metrics lines")
    checkpoint_every: int = run_option("checkpoint_every", 500, "steps between checkpoints")
    resume: bool = run_option("resume", help="continue from OUT/checkpoint.pt exactly")
    progress: bool = run_option("progress", help="show a progress bar")
    tensorboard: bool = True  # also log to OUT/tensorboard when installed
    skip_bad_shards: bool = option(False, "warn and skip families whose shards are missing or corrupt (default: stop)")
    max_minutes: float = option(0.0, "stop after this many minutes of training (checkpointed); 0 = run all steps")
    flat_batch: int = option(64, "--algo pretrain: labelled images per step (classes = all of the split's)")
    pool_families: bool = option(False, "merge each split's families into one (tasks from all its classes, as plain MAML benchmarks)")

    def shape(self) -> EpisodeShape:
        return EpisodeShape(self.ways, self.shots, self.queries, self.val, self.meta_tasks, self.goal_tasks)


@dataclass(kw_only=True)
class FitConfig(TrainSettings):
    """Everything one `fit` run needs; config.json records it under "fit"."""

    data: str = option("", "dataset folder (shards + manifest.json) or URL prefix (required, here or in --config)",
                       cli_type=str)  # fmt: skip
    out: str = option("runs/fit", "output folder: checkpoint.pt, metrics.jsonl, config.json", cli_type=Path)
    algo: str = option("maltml", f"algorithm: {', '.join(ALGORITHMS)}")
    config: str = config_option()


def open_stream(cfg: "FitConfig", split: str, shape: EpisodeShape, seed: int, per_visit: int) -> FamilyStream:
    source = load_manifest(cfg.data).pooled() if cfg.pool_families else cfg.data
    return FamilyStream(source, split, shape, seed=seed, episodes_per_visit=per_visit)


def algorithm_hparams(cfg: TrainSettings, algo: str) -> dict:
    """The algorithm's settings from the fit settings (a fixed-order preset keeps its own order)."""
    keys = ("alpha", "beta", "gamma", "task_steps", "meta_steps", "goal_steps", "order", "meta_reduction",
            "learn_step_sizes", "per_step_step_sizes", "compile", "impl")  # fmt: skip
    hp = {k: getattr(cfg, k) for k in keys}
    # Stabilizers only where set: records and old checkpoints read the same when they are off.
    for k in ("multi_step_loss", "meta_multi_step_loss", "zero_head"):
        if getattr(cfg, k):
            hp[k] = True
    if cfg.multi_step_loss or cfg.meta_multi_step_loss:
        hp["msl_anneal_steps"] = cfg.msl_anneal_steps
    if algorithm_class(algo).fixed_order is not None:
        hp.pop("order")
    return hp


def make_batch_source(cfg: FitConfig, stream: FamilyStream):
    """``make_batches(start_step)`` for the training loop."""

    def make_batches(start_step: int) -> Iterator[FamilyBatch]:
        episodes = stream.resumable(cfg.batch, start_step, cfg.skip_bad_shards)
        loader = DataLoader(
            episodes,
            batch_size=cfg.batch,
            num_workers=cfg.workers,
            collate_fn=collate,
            persistent_workers=False,
            prefetch_factor=4 if cfg.workers else None,
        )
        return iter(loader)

    return make_batches


def run_record(cfg: FitConfig, spec: dict, hparams: dict, algo, stream: FamilyStream, info, device) -> dict:
    """What config.json records of a run: the settings, model, algorithm, data and processes."""
    manifest = stream.manifest
    return {
        "fit": asdict(cfg), "model": spec, "batch_norm": cfg.bn,
        "algorithm": {"name": cfg.algo, **hparams, "adapt": algo.adapt},
        "episode_shape": cfg.shape().as_dict(),
        "data": {"dataset": manifest.dataset, "build_id": manifest.build_id, "synthetic": manifest.synthetic,
                 "split": cfg.split, "families": len(stream.families), "pooled": cfg.pool_families},
        "world_size": info.world_size, "device": str(device),
    }  # fmt: skip


def fit(cfg: FitConfig) -> dict:
    """Train; returns the config record (also written to OUT/config.json)."""
    if not cfg.data:
        raise FewtaskError("fit needs --data (a dataset folder or URL prefix), on the command line or in --config")
    cls = algorithm_class(cfg.algo)
    device = dist_util.device_for(cfg.device)
    cfg = replace(cfg, impl=resolve_impl(cfg.impl, device, cfg.algo))
    info = dist_util.init_from_env(device)
    try:
        out = io.ensure_writable(cfg.out)
        seed_everything(cfg.seed)
        stream = open_stream(cfg, cfg.split, cfg.shape(), cfg.seed, cfg.episodes_per_visit)
        channels, side = image_geometry(stream.manifest.image_shape)
        bn_steps = max(cfg.task_steps, cfg.goal_steps) if cfg.per_step_bn else 0
        spec = model_spec(cfg.model, cfg.ways, channels, side, cfg.hidden, cfg.bn, bn_steps)
        if cls.flat_training:  # plain classification over all the split's classes
            flat = FlatStream(stream.manifest, cfg.split, cfg.flat_batch, seed=cfg.seed)
            spec["ways"] = len(flat.classes)
            make_batches = flat_batch_source(flat, cfg.workers)
        else:
            make_batches = make_batch_source(cfg, stream)
        model = build_from_spec(spec).to(device)
        dist_util.broadcast_(model.parameters(), info)
        hparams = algorithm_hparams(cfg, cfg.algo)
        algo = make_algorithm(cfg.algo, model, **hparams)
        record = run_record(cfg, spec, hparams, algo, stream, info, device)
        if info.is_main:
            io.write_json(out / CONFIG_NAME, record)
        train_cfg = TrainConfig(
            steps=cfg.steps, out=out, lr=cfg.lr, seed=cfg.seed, log_every=cfg.log_every,
            checkpoint_every=cfg.checkpoint_every, resume=cfg.resume, progress=cfg.progress,
            tensorboard=cfg.tensorboard, max_seconds=60 * cfg.max_minutes, extra=record,
            **cfg.loop_settings(),
        )  # fmt: skip
        result = train(
            model, algo, make_batches, train_cfg,
            transform=(lambda b: b.to(device, non_blocking=True)) if device.type != "cpu" else None,
            after_backward=lambda params: dist_util.average_gradients_(params, info),
            is_main=info.is_main, agree=lambda flag: dist_util.any_rank(flag, info),
        )  # fmt: skip
        record["result"] = {"step": result.step, "seconds": round(result.seconds, 2), **result.last_metrics}
        if info.is_main:
            io.write_json(out / CONFIG_NAME, record)
        dist_util.barrier(info)
        return record
    finally:
        dist_util.shutdown(info)


def run_fit(cfg: FitConfig) -> None:
    record = fit(cfg)
    r = record["result"]
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"trained {cfg.algo} for {r['step']} steps in {r['seconds']} s; checkpoint in {cfg.out}")


fit_command = typer_command(
    FitConfig, run_fit, "Meta-train a conv net on families streamed from shards (runs under torchrun too)."
)
