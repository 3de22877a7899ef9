"""`fewtask-train fit`: meta-train on image families streamed from shards.

    shards (FamilyStream, split by rank and DataLoader worker)
      -> FamilyBatch -> algorithm.outer_grads -> [all-reduce over ranks] -> Adam

Runs as one process or under ``torchrun --nproc_per_node N`` (see
trainer/distributed.py). The output folder holds ``checkpoint.pt``,
``metrics.jsonl`` and ``config.json`` (every setting, the model spec, the batch-norm
policy and the data's identity), which `fewtask-train eval` reads back.
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import asdict, dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Iterator

import torch
import typer
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from fewtask_data import EpisodeShape, FamilyBatch, FamilyStream, FewtaskError, FlatStream, Manifest, collate, load_manifest
from fewtask_data.io import write_json
from trainer import distributed as dist_util
from trainer.algorithms import ALGORITHMS, make_algorithm, resolve_impl
from trainer.checkpoint import seed_everything
from trainer.loop import TrainConfig, ensure_writable, train
from trainer.models import build_model
from trainer.pretrain_vision import FlatClassifier, flat_batch_source

CONFIG_NAME = "config.json"


@dataclass
class FitConfig:
    data: str
    out: str
    algo: str = "maltml"
    split: str = "train"
    ways: int = 5
    shots: int = 1
    queries: int = 5
    val: int = 5
    meta_tasks: int = 5
    goal_tasks: int = 1
    batch: int = 4  # families per outer step (per process)
    steps: int = 1000
    model: str = "conv4"
    hidden: int = 64
    bn: str = "task"
    alpha: float = 0.4
    beta: float = 0.05  # a meta step moves along a whole meta-gradient: much smaller than alpha
    gamma: float = 0.4
    task_steps: int = 1
    meta_steps: int = 1
    goal_steps: int = 1
    order: int = 3
    learn_step_sizes: bool = False
    lr: float = 1e-3
    seed: int = 0
    episodes_per_visit: int = 2
    workers: int = 0
    device: str = "cpu"
    compile: bool = False
    impl: str = "vmap"  # vmap (batched tasks) | loop (plain autograd) | auto (loop on CPU where available, else vmap)
    log_every: int = 50
    checkpoint_every: int = 500
    resume: bool = False
    progress: bool = True
    tensorboard: bool = True
    skip_bad_shards: bool = False
    max_minutes: float = 0.0  # stop after this much training time (0: run all steps)
    flat_batch: int = 64  # images per step for --algo pretrain
    pool_families: bool = False  # one family per split: tasks drawn from all its classes (plain MAML benchmarks)

    def shape(self) -> EpisodeShape:
        return EpisodeShape(self.ways, self.shots, self.queries, self.val, self.meta_tasks, self.goal_tasks)


def pooled_manifest(manifest: Manifest) -> Manifest:
    """The same shards with each split's families merged into one family ``all-<split>``, so
    tasks are drawn uniformly from every class of the split (the standard Omniglot benchmark
    task distribution). Augmentation specs are dropped."""
    data = copy.deepcopy(manifest.data)
    for split, body in data["splits"].items():
        family = {"id": f"all-{split}", "classes": manifest.split_classes(split), "meta": {"pooled": True}}
        body["families"] = [family]
    return Manifest(data, manifest.root)


def open_stream(cfg: "FitConfig", split: str, shape: EpisodeShape, seed: int, per_visit: int) -> FamilyStream:
    source = pooled_manifest(load_manifest(cfg.data)) if cfg.pool_families else cfg.data
    return FamilyStream(source, split, shape, seed=seed, episodes_per_visit=per_visit)


def image_geometry(manifest_image: dict) -> tuple[int, int]:
    """(channels, side) from the manifest's image shape [H, W] or [H, W, 3]."""
    shape = list(manifest_image["shape"])
    if len(shape) not in (2, 3) or shape[0] != shape[1]:
        raise FewtaskError(f"the conv models need square images, the dataset has shape {shape}")
    return (1 if len(shape) == 2 else shape[2]), shape[0]


def model_spec(cfg: FitConfig, channels: int, side: int) -> dict:
    """Everything `build_model` needs; saved in config.json so eval rebuilds the same model."""
    return {"name": cfg.model, "ways": cfg.ways, "in_channels": channels, "image_size": side, "hidden": cfg.hidden, "bn": cfg.bn}


def build_from_spec(spec: dict) -> torch.nn.Module:
    return build_model(spec["name"], **{k: v for k, v in spec.items() if k != "name"})


def algorithm_hparams(cfg: FitConfig) -> dict:
    keys = ("alpha", "beta", "gamma", "task_steps", "meta_steps", "goal_steps", "order", "learn_step_sizes", "compile", "impl")
    hp = {k: getattr(cfg, k) for k in keys}
    if cfg.algo in ("fomaml",):  # its preset fixes the order
        hp.pop("order")
    return hp


class ResumableEpisodes(IterableDataset):
    """The stream's episodes for this rank and worker, skipping those the first
    ``start_step`` outer steps already used, without loading their families.

    A DataLoader with W workers takes its i-th batch from worker i % W. Resuming at
    step s, a fresh loader's worker w must play the part of the old run's worker
    (w + s) % W (which has produced ceil((s - role) / W) batches by then), so workers
    split visits by that role rather than by their id. Visits are skipped whole; the
    rest of a half-used visit is dropped episode by episode.
    """

    def __init__(self, stream: FamilyStream, batch: int, start_step: int, skip_bad_shards: bool = False):
        super().__init__()
        self.stream, self.batch, self.start_step = stream, batch, start_step
        self.skip_bad_shards = skip_bad_shards

    def _episodes(self, visits):
        """The stream's episodes; with ``skip_bad_shards`` a family whose shard cannot be
        read (missing, truncated, altered) is skipped with a warning naming the shard."""
        if not self.skip_bad_shards:
            for visit in visits:
                yield from self.stream.visit(*visit)
            return
        failed_in_row = 0
        for visit in visits:
            try:
                episodes = list(self.stream.visit(*visit))
            except FewtaskError as err:
                failed_in_row += 1
                if failed_in_row > len(self.stream.families):
                    raise FewtaskError(f"no family of the split can be read any more (last: {err})") from None
                print(f"warning: skipping family {visit[2]['id']!r}: {err}", file=sys.stderr, flush=True)
                continue
            failed_in_row = 0
            yield from episodes

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        role = (worker + self.start_step) % workers
        done_batches = max(0, -(-(self.start_step - role) // workers))
        used = done_batches * self.batch
        per_visit = self.stream.episodes_per_visit
        s = self.stream
        pipeline = wds.DataPipeline(
            s.visits,
            wds.split_by_node,
            lambda visits: islice(visits, role, None, workers),
            lambda visits: islice(visits, used // per_visit, None),
            self._episodes,
            lambda episodes: islice(episodes, used % per_visit, None),
        )
        return iter(pipeline)


def make_batch_source(cfg: FitConfig, stream: FamilyStream):
    """``make_batches(start_step)`` for the training loop."""

    def make_batches(start_step: int) -> Iterator[FamilyBatch]:
        episodes = ResumableEpisodes(stream, cfg.batch, start_step, cfg.skip_bad_shards)
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


def fit(cfg: FitConfig) -> dict:
    """Train; returns the config record (also written to OUT/config.json)."""
    if cfg.algo not in ALGORITHMS:
        raise FewtaskError(f"unknown algorithm {cfg.algo!r}; choose one of {', '.join(ALGORITHMS)}")
    if cfg.batch < 1 or cfg.workers < 0:
        raise FewtaskError("--batch must be >= 1 and --workers >= 0")
    device = dist_util.device_for(cfg.device)
    cfg = replace(cfg, impl=resolve_impl(cfg.impl, device, cfg.algo))
    info = dist_util.init_from_env(device)
    try:
        out = ensure_writable(Path(cfg.out))
        seed_everything(cfg.seed)
        stream = open_stream(cfg, cfg.split, cfg.shape(), cfg.seed, cfg.episodes_per_visit)
        channels, side = image_geometry(stream.manifest.data["image"])
        spec = model_spec(cfg, channels, side)
        if cfg.algo == "pretrain":  # plain classification over all the split's classes
            flat = FlatStream(stream.manifest, cfg.split, cfg.flat_batch, seed=cfg.seed)
            spec["ways"] = len(flat.classes)
            make_batches = flat_batch_source(flat, cfg.workers)
        else:
            make_batches = make_batch_source(cfg, stream)
        model = build_from_spec(spec).to(device)
        dist_util.broadcast_(model.parameters(), info)
        if cfg.algo == "pretrain":
            algo = FlatClassifier(model=model, name="pretrain", **algorithm_hparams(cfg))
        else:
            algo = make_algorithm(cfg.algo, model, **algorithm_hparams(cfg))
        record = {
            "fit": asdict(cfg),
            "model": spec,
            "batch_norm": cfg.bn,
            "algorithm": {"name": cfg.algo, **algorithm_hparams(cfg), "adapt": algo.adapt},
            "episode_shape": cfg.shape().as_dict(),
            "data": {
                "dataset": stream.manifest.data.get("dataset"),
                "build_id": stream.manifest.data.get("build_id"),
                "synthetic": stream.manifest.data.get("synthetic"),
                "split": cfg.split,
                "families": len(stream.families),
                "pooled": cfg.pool_families,
            },
            "world_size": info.world_size,
            "device": str(device),
        }
        if info.is_main:
            write_json(out / CONFIG_NAME, record)
        train_cfg = TrainConfig(
            steps=cfg.steps,
            out=out,
            lr=cfg.lr,
            seed=cfg.seed,
            log_every=cfg.log_every,
            checkpoint_every=cfg.checkpoint_every,
            resume=cfg.resume,
            progress=cfg.progress,
            tensorboard=cfg.tensorboard,
            max_seconds=60 * cfg.max_minutes,
            extra=record,
        )
        result = train(
            model,
            algo,
            make_batches,
            train_cfg,
            transform=(lambda b: b.to(device, non_blocking=True)) if device.type != "cpu" else None,
            after_backward=lambda params: dist_util.average_gradients_(params, info),
            is_main=info.is_main,
            agree=lambda flag: dist_util.any_rank(flag, info),
        )
        record["result"] = {"step": result.step, "seconds": round(result.seconds, 2), **result.last_metrics}
        if info.is_main:
            write_json(out / CONFIG_NAME, record)
        dist_util.barrier(info)
        return record
    finally:
        dist_util.shutdown(info)


def fit_command(
    data: str = typer.Option(..., "--data", help="dataset folder (shards + manifest.json) or URL prefix"),
    out: Path = typer.Option(Path("runs/fit"), "--out", help="output folder: checkpoint.pt, metrics.jsonl, config.json"),
    algo: str = typer.Option("maltml", help=f"algorithm: {', '.join(ALGORITHMS)}"),
    split: str = typer.Option("train", help="split whose families train the model"),
    ways: int = typer.Option(5, help="N: classes per task"),
    shots: int = typer.Option(1, help="K: support images per class"),
    queries: int = typer.Option(5, help="Q: query images per class (meta-finetuning tasks)"),
    val: int = typer.Option(5, help="V: validation images per class (goal tasks)"),
    meta_tasks: int = typer.Option(5, help="L: meta-finetuning tasks per family"),
    goal_tasks: int = typer.Option(1, help="C: goal tasks per family"),
    batch: int = typer.Option(4, help="families per outer step (per process)"),
    steps: int = typer.Option(1000, help="outer steps"),
    model: str = typer.Option("conv4", help="conv4 (Finn et al.) or resnet12"),
    hidden: int = typer.Option(64, help="conv4 filters (ResNet-12: first block width, scaled 64-160-320-640)"),
    bn: str = typer.Option("task", help="batch norm: 'task' (statistics of the current task's batch, as MAML) or 'none'"),
    alpha: float = typer.Option(0.4, help="task step size (inner loop; MAML's alpha)"),
    beta: float = typer.Option(0.05, help="meta step size (meta-finetuning on the L tasks)"),
    gamma: float = typer.Option(0.4, help="goal finetuning step size"),
    task_steps: int = typer.Option(1, help="r: task steps"),
    meta_steps: int = typer.Option(1, help="m: meta steps"),
    goal_steps: int = typer.Option(1, help="finetuning steps on a goal task during training"),
    order: int = typer.Option(3, help="MALTML derivative order: 3 exact, 2, 1 first order (MAML: 1 = FOMAML)"),
    learn_step_sizes: bool = typer.Option(False, help="learn alpha, beta, gamma per parameter tensor"),
    lr: float = typer.Option(1e-3, help="Adam learning rate (outer loop)"),
    seed: int = typer.Option(0, help="seed for the model and the stream"),
    episodes_per_visit: int = typer.Option(2, help="episodes drawn from a family each time it is loaded"),
    workers: int = typer.Option(0, help="DataLoader worker processes streaming families"),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N or auto"),
    compile: bool = typer.Option(False, help="torch.compile the outer step"),
    impl: str = typer.Option("vmap", help="vmap (tasks batched), loop (plain autograd, task by task; faster for conv4-64 at 28x28 on CPU) or auto (loop on CPU where the algorithm has one, else vmap)"),
    log_every: int = typer.Option(50, help="steps between metrics lines"),
    checkpoint_every: int = typer.Option(500, help="steps between checkpoints"),
    resume: bool = typer.Option(False, help="continue from OUT/checkpoint.pt exactly"),
    progress: bool = typer.Option(True, help="show a progress bar"),
    skip_bad_shards: bool = typer.Option(False, help="warn and skip families whose shards are missing or corrupt (default: stop)"),
    max_minutes: float = typer.Option(0.0, help="stop after this many minutes of training (checkpointed); 0 = run all steps"),
    flat_batch: int = typer.Option(64, help="--algo pretrain: labelled images per step (classes = all of the split's)"),
    pool_families: bool = typer.Option(False, help="merge each split's families into one (tasks from all its classes, as plain MAML benchmarks)"),
) -> None:
    """Meta-train a conv net on families streamed from shards (runs under torchrun too)."""
    cfg = FitConfig(**{k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()})
    record = fit(cfg)
    r = record["result"]
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"trained {cfg.algo} for {r['step']} steps in {r['seconds']} s; checkpoint in {cfg.out}")
