"""`fewtask-train fit` / `eval` on small shard datasets: resume, determinism, clear errors."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import pytest
import torch
import toydata
from results_schema import check_results
from typer.testing import CliRunner

from fewtask_data import EpisodeShape, FamilyStream, FewtaskError, write_episodes
from trainer.cli import app
from trainer.experiments.eval import evaluate_checkpoint
from trainer.experiments.fit import FitConfig, fit
from trainer.training import checkpoint as ckpt

torch.set_num_threads(1)

SHAPE = dict(ways=3, shots=1, queries=2, val=2, meta_tasks=2, goal_tasks=1)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "data"
    toydata.build_toy(out, n_classes=16, per_class=8, side=16)
    return out


@pytest.fixture(scope="module")
def test_h5(toy, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("eps") / "test.h5"
    stream = FamilyStream(str(toy), "test", EpisodeShape(**SHAPE), seed=5)
    write_episodes(path, islice(iter(stream), 12), {"split": "test"})
    return path


def config(data: Path, out: Path, **kw) -> FitConfig:
    base = dict(SHAPE, batch=2, steps=4, hidden=4, log_every=1, checkpoint_every=2, progress=False, alpha=0.1, beta=0.1, gamma=0.1)
    return FitConfig(data=str(data), out=str(out), **{**base, **kw})


def params_of(out: Path) -> dict[str, torch.Tensor]:
    return ckpt.load(out / ckpt.CHECKPOINT_NAME)["model"]


def test_fit_writes_checkpoint_config_and_metrics(toy, tmp_path):
    record = fit(config(toy, tmp_path / "run"))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["batch_norm"] == "task" and saved["model"]["name"] == "conv4"
    assert saved["model"]["in_channels"] == 1 and saved["model"]["image_size"] == 16
    assert saved["result"]["step"] == record["result"]["step"] == 4
    assert saved["algorithm"]["impl"] == "vmap"  # the default
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    assert all(x["episodes_per_s"] > 0 and 0 <= x["acc"] <= 1 for x in lines)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_exact(toy, tmp_path, workers):
    fit(config(toy, tmp_path / "a", steps=6, workers=workers))
    fit(config(toy, tmp_path / "b", steps=3, workers=workers, checkpoint_every=1))
    fit(config(toy, tmp_path / "b", steps=6, workers=workers, resume=True))
    a, b = params_of(tmp_path / "a"), params_of(tmp_path / "b")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_eval_is_deterministic_and_reports_both_protocols(toy, test_h5, tmp_path):
    fit(config(toy, tmp_path / "run", algo="maml"))
    report = check_results(evaluate_checkpoint(tmp_path / "run", test_h5, steps=3, batch_size=5))
    first, extra = report["methods"]["maml"], report["extra"]
    second = evaluate_checkpoint(tmp_path / "run" / "checkpoint.pt", test_h5, steps=3, batch_size=5)["methods"]["maml"]
    for key in ("without_meta_update", "with_meta_update"):
        assert first[key] == second[key]
        assert len(first[key]["accuracy"]["mean"]) == 4 and all(0 <= a <= 1 for a in first[key]["accuracy"]["mean"])
    assert extra["episodes"] == 12 and extra["batch_norm"] == "task" and extra["finetune_level"] == "alpha"
    # 0 finetuning steps without meta-finetuning is the plain model: both sides agree there only if L=0
    assert report["steps"] == [0, 1, 2, 3]
    assert extra["impl"] == "loop"  # auto on CPU
    gain = first["meta_update_gain"]["accuracy"]["mean"]
    for i in range(4):
        diff = first["with_meta_update"]["accuracy"]["mean"][i] - first["without_meta_update"]["accuracy"]["mean"][i]
        assert gain[i] == pytest.approx(diff, abs=1e-9)
    batched = evaluate_checkpoint(tmp_path / "run", test_h5, steps=3, batch_size=5, impl="vmap")["methods"]["maml"]
    for key in ("without_meta_update", "with_meta_update"):
        assert batched[key]["accuracy"]["mean"] == pytest.approx(first[key]["accuracy"]["mean"], abs=1e-6)
        assert batched[key]["loss"]["mean"] == pytest.approx(first[key]["loss"]["mean"], rel=1e-4)
    # One protocol only (what `tune` scores): the same numbers, the other one not computed.
    meant = evaluate_checkpoint(tmp_path / "run", test_h5, steps=3, batch_size=5, protocols=("without_meta_update",))
    assert "with_meta_update" not in meant["methods"]["maml"] and "meta_update_gain" not in meant["methods"]["maml"]
    assert meant["methods"]["maml"]["without_meta_update"] == first["without_meta_update"]


def test_eval_cli_writes_json_and_plot(toy, test_h5, tmp_path):
    fit(config(toy, tmp_path / "run", steps=2))
    result = CliRunner().invoke(app, ["eval", "--checkpoint", str(tmp_path / "run"), "--episodes", str(test_h5), "--steps", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert data["extra"]["finetune_level"] == "gamma" and (tmp_path / "run" / "eval.png").stat().st_size > 0
    # A progress bar over the 12 episodes on stderr by default; --no-progress: none, same results.
    assert "evaluating" in result.stderr and "12/12" in result.stderr and "evaluating" not in result.stdout
    quiet = CliRunner().invoke(app, ["eval", "--checkpoint", str(tmp_path / "run"), "--episodes", str(test_h5), "--steps", "2",
                                     "--no-progress"])  # fmt: skip
    assert quiet.exit_code == 0 and "evaluating" not in quiet.output and quiet.stdout == result.stdout


def test_eval_rejects_episodes_of_another_shape(toy, tmp_path):
    fit(config(toy, tmp_path / "run", steps=1))
    other = tmp_path / "two_way.h5"
    stream = FamilyStream(str(toy), "test", EpisodeShape(**{**SHAPE, "ways": 2}), seed=1)
    write_episodes(other, islice(iter(stream), 2), {})
    with pytest.raises(FewtaskError, match="2-way episodes but the model has 3 outputs"):
        evaluate_checkpoint(tmp_path / "run", other, steps=1)
    big = tmp_path / "big"
    toydata.build_toy(big, n_classes=8, per_class=8, side=20)
    bigger = tmp_path / "big.h5"
    write_episodes(bigger, islice(iter(FamilyStream(str(big), "test", EpisodeShape(**SHAPE), seed=1)), 2), {})
    with pytest.raises(FewtaskError, match="images of shape"):
        evaluate_checkpoint(tmp_path / "run", bigger, steps=1)


def test_resume_with_another_model_is_a_clear_error(toy, tmp_path):
    fit(config(toy, tmp_path / "run", steps=1))
    with pytest.raises(FewtaskError, match="different model"):
        fit(config(toy, tmp_path / "run", steps=2, hidden=6, resume=True))


def test_missing_shard_mid_training_names_it_or_is_skipped(toy, tmp_path, capfd):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(toy, data)
    shard = sorted(data.glob("*.tar"))[0]
    shard.unlink()  # after the build, before the stream reaches it
    with pytest.raises(FewtaskError, match=shard.name):
        fit(config(data, tmp_path / "stop", steps=3))
    assert not (tmp_path / "stop" / "checkpoint.pt").exists()
    fit(config(data, tmp_path / "skip", steps=3, skip_bad_shards=True))
    assert shard.name in capfd.readouterr().err
    assert (tmp_path / "skip" / "checkpoint.pt").exists()


def test_corrupt_shard_stops_via_cli_with_one_line(toy, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(toy, data)
    for shard in data.glob("*.tar"):
        shard.write_bytes(shard.read_bytes()[:-700])  # truncated
    result = CliRunner().invoke(app, ["fit", "--data", str(data), "--out", str(tmp_path / "o"), "--ways", "3",
                                      "--queries", "2", "--val", "2", "--meta-tasks", "2", "--steps", "2",
                                      "--hidden", "4", "--no-progress"])
    assert result.exit_code != 0
    assert isinstance(result.exception, FewtaskError) and ".tar" in str(result.exception)


def test_nan_guard_keeps_last_good_checkpoint(toy, tmp_path, monkeypatch):
    from trainer import algorithms

    real = algorithms.Algorithm.outer_grads
    calls = {"n": 0}

    def poisoned(self, params, sizes, buffers, batch):
        calls["n"] += 1
        grads, sgrads, metrics = real(self, params, sizes, buffers, batch)
        if calls["n"] == 3:
            grads = {k: torch.full_like(v, float("nan")) for k, v in grads.items()}
        return grads, sgrads, metrics

    monkeypatch.setattr(algorithms.Algorithm, "outer_grads", poisoned)
    with pytest.raises(FewtaskError, match=r"non-finite .* step 3.*last good checkpoint \(step 2\)"):
        fit(config(toy, tmp_path / "run", steps=4, algo="maml"))
    state = ckpt.load(tmp_path / "run" / "checkpoint.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_pooled_families_and_time_limit(toy, tmp_path):
    from fewtask_data import load_manifest

    pooled = load_manifest(str(toy)).pooled()
    assert [f["id"] for f in pooled.families("train")] == ["all-train"]
    assert len(pooled.families("train")[0]["classes"]) == 12
    record = fit(config(toy, tmp_path / "run", steps=50, pool_families=True, max_minutes=1e-6))
    assert record["result"]["step"] == 1 and record["data"]["pooled"] is True
    assert ckpt.load(tmp_path / "run" / "checkpoint.pt")["step"] == 1


def test_pretrain_baseline_trains_flat_and_evaluates_with_a_fresh_head(toy, test_h5, tmp_path):
    record = fit(config(toy, tmp_path / "run", algo="pretrain", steps=3, flat_batch=16))
    assert record["model"]["ways"] == 12  # every class of the training split
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 3 and lines[-1]["episodes_per_s"] > 0
    res = evaluate_checkpoint(tmp_path / "run", test_h5, steps=2)
    assert res["extra"]["model"]["ways"] == 3 and res["extra"]["model"]["pretrained_classes"] == 12
    # A zero head scores every class alike: argmax picks label 0, a third of each 3-way set.
    assert res["methods"]["pretrain"]["without_meta_update"]["accuracy"]["mean"][0] == pytest.approx(1 / 3)
    assert res["extra"]["finetune_level"] == "alpha"


def test_impl_auto_picks_loops_on_cpu_only_where_they_exist():
    from trainer.algorithms import resolve_impl

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_impl("auto", cpu, "maltml") == "loop" and resolve_impl("auto", cpu, "fo-maltml") == "vmap"
    assert resolve_impl("auto", gpu, "maml") == "vmap" and resolve_impl("auto", cpu) == "loop"
    assert resolve_impl("vmap", cpu, "maml") == "vmap"
    with pytest.raises(FewtaskError, match="--impl must be auto, vmap or loop"):
        resolve_impl("fast", cpu)


def test_meta_reduction_is_recorded_and_evaluated_as_trained(toy, test_h5, tmp_path):
    record = fit(config(toy, tmp_path / "mean", meta_reduction="mean", steps=2))
    assert record["algorithm"]["meta_reduction"] == record["fit"]["meta_reduction"] == "mean"
    assert ckpt.load(tmp_path / "mean" / "checkpoint.pt")["meta_reduction"] == "mean"
    as_trained = evaluate_checkpoint(tmp_path / "mean", test_h5, steps=1)
    told = evaluate_checkpoint(tmp_path / "mean", test_h5, steps=1, meta_reduction="sum")
    assert (as_trained["extra"]["meta_reduction"], told["extra"]["meta_reduction"]) == ("mean", "sum")
    told, as_trained = told["methods"]["maltml"], as_trained["methods"]["maltml"]
    assert told["without_meta_update"] == as_trained["without_meta_update"]
    assert told["with_meta_update"]["loss"] != as_trained["with_meta_update"]["loss"]
    with pytest.raises(FewtaskError, match="trained with --meta-reduction mean, not sum"):
        fit(config(toy, tmp_path / "mean", steps=3, resume=True))  # the default is sum
    # A checkpoint from before the option (no field anywhere) was trained with the mean.
    fit(config(toy, tmp_path / "old", steps=2))
    path = tmp_path / "old" / "checkpoint.pt"
    state = ckpt.load(path)
    del state["meta_reduction"], state["config"]["extra"]["algorithm"]["meta_reduction"]
    ckpt.save(path, state)
    assert evaluate_checkpoint(tmp_path / "old", test_h5, steps=1)["extra"]["meta_reduction"] == "mean"


def test_combine_pairs_methods_evaluated_apart(toy, test_h5, tmp_path):
    """Tuned methods are fit and evaluated one run each; `combine` pairs them per seed on the same episodes."""
    folders = []
    for algo in ("maltml", "maml"):
        for seed in (0, 1):
            run = tmp_path / f"{algo}-{seed}"
            fit(config(toy, run, algo=algo, seed=seed, steps=2))
            r = CliRunner().invoke(app, ["eval", "--checkpoint", str(run), "--episodes", str(test_h5), "--steps", "1",
                                         "--no-progress"])  # fmt: skip
            assert r.exit_code == 0, r.output
            folders.append(run)
    r = CliRunner().invoke(app, ["combine", "--runs", ",".join(map(str, folders)), "--out", str(tmp_path / "joint")])
    assert r.exit_code == 0, r.output
    joint = check_results(tmp_path / "joint" / "results.json")
    assert joint["seeds"] == [0, 1] and set(joint["methods"]) == {"maltml", "maml"}
    for algo in ("maltml", "maml"):
        for seed in (0, 1):
            alone = json.loads((tmp_path / f"{algo}-{seed}" / "eval.json").read_text())["methods"][algo]
            mine = joint["per_seed"][str(seed)]["methods"][algo]
            for p in ("with_meta_update", "without_meta_update", "meta_update_gain"):
                for metric in ("accuracy", "loss"):
                    assert mine[p][metric]["mean"] == alone[p][metric]["mean"]
                    assert mine[p][metric]["ci95"] == alone[p][metric]["ci95"]
    per_seed = joint["per_seed"]["0"]
    a, b = per_seed["methods"]["maltml"], per_seed["methods"]["maml"]
    as_meant = per_seed["comparisons"]["maltml_minus_maml"]["with_minus_without"]["accuracy"]["mean"]
    expected = [x - y for x, y in zip(a["with_meta_update"]["accuracy"]["mean"], b["without_meta_update"]["accuracy"]["mean"])]
    assert as_meant == pytest.approx(expected, abs=1e-9)
    bad = CliRunner().invoke(app, ["combine", "--runs", f"{folders[0]},{folders[1]},{folders[2]}", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "missing: maml seed 1" in str(bad.exception)  # a FewtaskError: one line from the CLI
