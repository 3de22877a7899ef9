"""`fewtask-train analyze` on tiny navigation, continual and continual-oml run folders; the
known case (adaptation that only moves the head leaves every body layer at similarity 1);
the subset option of the RL evaluation leaves the default numbers bit for bit; bad input
as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from entry_point import train_cli as cli
from tinynav import crop_families, navigation_run
from typer.testing import CliRunner

from fewtask_data.sources.continual_sines import ContinualSpec
from trainer.cli import app
from trainer.domains.continual.net import ContinualNet
from trainer.domains.rl.env import env_maker
from trainer.domains.rl.methods import RLSettings, Sampler
from trainer.domains.rl.policy import GaussianMLP
from trainer.evaluation import continual_analysis as cont
from trainer.evaluation import rl_analysis
from trainer.evaluation.analysis import META_ROWS, PAIRS
from trainer.evaluation.rl import family_curves
from trainer.evaluation.similarity import MEASURES

torch.set_num_threads(1)
runner = CliRunner()
NAV_TINY = ["--iterations", "2", "--seeds", "0", "--trajectories", "3", "--horizon", "6", "--hidden", "8,8",
            "--eval-steps", "1", "--batch-families", "2", "--tasks", "2", "--goal-tasks", "2", "--maml-tasks", "3"]  # fmt: skip



@pytest.fixture(scope="module")
def nav_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nav")
    return navigation_run(tmp / "run", crop_families(tmp), "maltml,maml", *NAV_TINY)


@pytest.fixture(scope="module")
def cont_run(tmp_path_factory):
    from fewtask_data.builders.continual_sines import build_continual_families

    tmp = tmp_path_factory.mktemp("cont")
    build_continual_families(tmp / "fams", families=4, test_families=2,
                             spec=ContinualSpec(functions=2, steps_per_function=2, batch=3, train_pool=20, eval_pool=20))  # fmt: skip
    r = runner.invoke(app, ["continual", "--families", str(tmp / "fams"), "--out", str(tmp / "run"), "--steps", "2",
                            "--width", "8", "--eval-problems", "3", "--val-problems", "1", "--test-points", "10",
                            "--lr-grid", "0.01,0.1", "--no-progress"])  # fmt: skip
    assert r.exit_code == 0, r.output
    return tmp / "run"


def _check_output(out: Path, methods: set, layers: dict, rows: list, columns: list, metric: str) -> dict:
    result = json.loads((out / "analysis.json").read_text())
    assert result["schema"] == "fewtask-analysis" and set(result["methods"]) == methods
    for m, section in result["methods"].items():
        assert section["layers"] == layers[m]
        for s in MEASURES:
            for p in PAIRS:
                assert set(section["similarity"][s][p]) == set(layers[m])
                assert all(0 <= v["mean"] <= 1 + 1e-6 for v in section["similarity"][s][p].values())
        grid = section["ablation"]["grid"]
        assert section["ablation"]["metric"] == metric and set(grid) == set(rows[m])  # canonical JSON sorts keys
        assert all(set(r) == set(columns) for r in grid.values())
    for s in MEASURES:
        assert (out / f"similarity-{s}.png").stat().st_size > 0
    assert (out / "ablation.md").exists()
    return result


def test_analyze_a_navigation_run(nav_run, tmp_path):
    r = runner.invoke(app, ["analyze", "--checkpoint", str(nav_run), "--steps", "1", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    layers = ["hidden.0", "hidden.1", "mean"]
    result = _check_output(tmp_path, {"maltml", "maml"}, {"maltml": layers, "maml": layers},
                           {"maltml": list(META_ROWS), "maml": list(META_ROWS)}, ["all", "head", "body"], "return")  # fmt: skip
    assert result["families"] == 3 and result["source"]["kind"] == "navigation"
    # the ablation's (all, all) cell is the run's own with-meta-update return after the goal steps
    run = json.loads((nav_run / "results.json").read_text())
    for m in ("maltml", "maml"):
        cell = result["methods"][m]["ablation"]["grid"]["all"]["all"]["return"]["mean"]
        assert cell == pytest.approx(run["methods"][m]["with_meta_update"]["return"]["mean"][1], rel=1e-5)
        none = result["methods"][m]["ablation"]["grid"]["none"]["all"]["return"]["mean"]
        assert none == pytest.approx(run["methods"][m]["without_meta_update"]["return"]["mean"][1], rel=1e-5)


def test_analyze_a_continual_run(cont_run, tmp_path):
    r = runner.invoke(app, ["analyze", "--checkpoint", str(cont_run), "--out", str(tmp_path), "--max-rows", "7"])
    assert r.exit_code == 0, r.output
    layers = [f"layers.{i}" for i in range(8)]
    result = _check_output(tmp_path, {"maltml", "oml"}, {"maltml": layers, "oml": layers},
                           {"maltml": list(cont.META), "oml": ["none"]}, list(cont.ONLINE), "mse")  # fmt: skip
    assert result["families"] == 6 and result["methods"]["oml"]["theta_prime"].startswith("= theta")
    # OML: theta' = theta, so theta -> theta' is exactly 1 everywhere; the online pass moves only
    # the PLN, so its RLN layers stay at 1 from theta' to phi (the known case)
    oml = result["methods"]["oml"]
    for s in MEASURES:
        assert all(v["mean"] == pytest.approx(1.0, abs=1e-6) for v in oml["similarity"][s]["theta_to_theta_prime"].values())
        for layer in oml["rln"]:
            assert oml["similarity"][s]["theta_prime_to_phi"][layer]["mean"] == pytest.approx(1.0, abs=1e-6)
    # the PLN-only column is the command's own evaluation
    run = json.loads((cont_run / "results.json").read_text())
    for m, protocol in (("oml", "without_meta_update"), ("maltml", "with_meta_update")):
        row = "none" if m == "oml" else "all"
        cell = result["methods"][m]["ablation"]["grid"][row]["pln"]["mse"]["mean"]
        assert cell == pytest.approx(run["methods"][m][protocol]["mse"]["mean"], rel=1e-6)


def test_analyze_a_continual_oml_run(tmp_path):
    tiny = ["--functions", "3", "--steps-per-function", "2", "--batch", "4", "--width", "8", "--eval-problems", "3",
            "--val-problems", "2", "--test-points", "10", "--lr-grid", "0.01,0.1", "--no-progress"]  # fmt: skip
    r = runner.invoke(app, ["continual-oml", "--out", str(tmp_path / "run"), "--curve", "2", "--methods", "oml,scratch",
                            *tiny])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["analyze", "--checkpoint", str(tmp_path / "run"), "--layers", "layers.0,layers.7",
                            "--measures", "cka"])  # fmt: skip
    assert r.exit_code == 0, r.output
    result = json.loads((tmp_path / "run" / "analysis" / "analysis.json").read_text())
    assert set(result["methods"]) == {"oml"} and "scratch" in result["skipped"] and result["families"] == 3
    assert result["methods"]["oml"]["layers"] == ["layers.0", "layers.7"]


def test_head_only_adaptation_keeps_every_hidden_layer():
    """The known case for policies: the goal steps move only the head, so every hidden layer's
    similarity theta' -> phi is exactly 1 and the mean's is not."""
    policy = GaussianMLP(2, 2, (8, 8))
    theta = policy.init(torch.Generator().manual_seed(0))
    theta["log_std"] = theta["log_std"] - 1.0
    settings = RLSettings(trajectories=4, alpha=0.5, beta=0.1, gamma=0.5)
    make_env = env_maker(6, False)
    crops = torch.tensor([[0.0, 0.0, 0.3, 0.3], [-0.4, -0.2, 0.3, 0.4]])
    gen = torch.Generator().manual_seed(1)
    meta = crops[:, None, :2] + torch.rand(2, 2, 2, generator=gen) * crops[:, None, 2:]
    goals = crops[:, None, :2] + torch.rand(2, 1, 2, generator=gen) * crops[:, None, 2:]
    head = policy.head_names()
    from trainer.evaluation.rl import _leaves, goal_stepped

    phi = goal_stepped(Sampler(make_env, policy, settings, torch.Generator().manual_seed(2)), theta, goals, 0.5, 2)
    assert not torch.equal(phi["w0"][0, 0], theta["w0"])  # by default every layer moves
    frozen = _leaves(theta, head)
    assert not frozen["w0"].requires_grad and frozen["w2"].requires_grad and frozen["log_std"].requires_grad
    sampler = Sampler(make_env, policy, settings, torch.Generator().manual_seed(2))
    sampled, _ = family_curves(sampler, theta, meta, goals, 0.5, 2, False, adapting=(None, head))
    assert sampled.shape == (2, 3) and torch.isfinite(sampled).all()
    # similarity: phi = theta with only the head changed
    moved = {k: (v + 0.3 if k in head else v) for k, v in theta.items()}
    probe = rl_analysis.probe_grid(crops[1])
    from trainer.evaluation.analysis import pair_similarities

    acts = {"theta": policy.layer_outputs(theta, probe), "theta_prime": policy.layer_outputs(theta, probe),
            "phi": policy.layer_outputs(moved, probe)}  # fmt: skip
    sims = pair_similarities(acts, policy.layer_names(), MEASURES, 0, 0)
    for s in MEASURES:
        for layer in ("hidden.0", "hidden.1"):
            assert sims[s]["theta_prime_to_phi"][layer] == pytest.approx(1.0, abs=1e-9)
    assert sims["cka"]["theta_prime_to_phi"]["mean"] < 1 - 1e-4


def test_subset_default_is_bitwise_the_evaluation():
    """family_curves with adapting=(None, None) (the default) gives the same numbers as before
    the option, and a head-only meta-update leaves the body exactly at theta."""
    policy = GaussianMLP(2, 2, (8,))
    theta = policy.init(torch.Generator().manual_seed(0))
    settings = RLSettings(trajectories=3, alpha=0.5, beta=0.1, gamma=0.5)
    make_env = env_maker(5, False)
    meta = torch.rand(2, 2, 2, generator=torch.Generator().manual_seed(1)) - 0.5
    goals = torch.rand(2, 2, 2, generator=torch.Generator().manual_seed(2)) - 0.5

    def run(**kw):
        return family_curves(Sampler(make_env, policy, settings, torch.Generator().manual_seed(3)), theta, meta, goals,
                             0.5, 2, True, **kw)[0]  # fmt: skip

    assert torch.equal(run(), run(adapting=(None, None)))
    from trainer.domains.rl.methods import meta_update
    from trainer.evaluation.rl import _leaves

    sampler = Sampler(make_env, policy, settings, torch.Generator().manual_seed(3))
    tuned, _ = meta_update(sampler, _leaves(theta, policy.head_names()), meta, True, [])
    for k in theta:
        same = torch.equal(tuned[k][0].detach(), theta[k])
        assert same == (k not in policy.head_names()), k


def test_continual_rln_only_online_pass_and_masked_meta_update():
    net = ContinualNet(3, rln=2, pln=1, width=5)
    params = {k: v.detach() for k, v in net.named_parameters()}
    x = torch.randn(4, 6, 2, 3, generator=torch.Generator().manual_seed(0))
    y = torch.randn(4, 6, 2, 1, generator=torch.Generator().manual_seed(1))
    pln = cont.online(params, x, y, 0.01, "pln", 2, 3)
    all_ = cont.online(params, x, y, 0.01, "all", 2, 3)
    rln = cont.online(params, x, y, 0.01, "rln", 2, 3)
    for k in params:
        is_pln = k.startswith("layers.2")
        assert torch.equal(pln[k], params[k]) != is_pln and torch.equal(rln[k], params[k]) == is_pln
        assert not torch.equal(all_[k], params[k])
    # the generic pass on the PLN agrees with the evaluation's own
    from trainer.core import functional as fn
    from trainer.domains.continual.net import mse_grads

    names = cont.names_of(params, "pln", 2)
    grads = lambda q, b: mse_grads(q, b[0], b[1], 0, 3)[1]  # noqa: E731
    generic = fn.descend_online(lambda q, b: None, params, {k: 0.01 for k in names}, (x.transpose(0, 1), y.transpose(0, 1)),
                                names, True, grad_fn=grads)  # fmt: skip
    for k in names:
        assert torch.allclose(generic[k], pln[k], atol=1e-6)
    from trainer.domains.continual.oml import MALTMLContinual

    algo = MALTMLContinual(net, lr=0.01, beta=0.05)
    meta = (x[:2], y[:2], x[:2, 0], y[:2, 0])
    full = cont.meta_updated(algo, params, meta, "all")
    only_pln = cont.meta_updated(algo, params, meta, "pln")
    for k in params:
        if k.startswith("layers.2"):
            assert torch.allclose(only_pln[k], full[k], atol=1e-6)
        else:
            assert torch.equal(only_pln[k], params[k])


def test_bad_input_is_one_line(nav_run, cont_run, tmp_path):
    r = cli("analyze", "--checkpoint", str(nav_run), "--layers", "hidden.9", "--out", str(tmp_path / "a"))
    assert r.returncode == 2 and "no layer hidden.9" in r.stderr and "hidden.0, hidden.1, mean" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = cli("analyze", "--checkpoint", str(cont_run), "--layers", "body.1", "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "no layer body.1" in r.stderr and "layers.0" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "empty").mkdir()
    r = cli("analyze", "--checkpoint", str(tmp_path / "empty"))
    assert r.returncode == 2 and "no run at" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = cli("analyze", "--checkpoint", str(nav_run), "--episodes", "x.h5")
    assert r.returncode == 2 and "no --episodes" in r.stderr and "Traceback" not in r.stderr
