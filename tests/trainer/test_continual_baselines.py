"""The continual baselines' pieces: Set-KL (SR-NN) against its closed form and central
differences, the published pretraining recipe's batches and heads, the step-decay schedule,
and `continual-oml --methods pretrain,srnn` end to end."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from fewtask_data import FewtaskError
from fewtask_data.sources.continual_sines import ContinualSpec, function_pool
from results_schema import check_results
from trainer.cli import app
from trainer.domains.continual import baselines
from trainer.domains.continual.net import ContinualNet
from trainer.experiments.continual_oml import ContinualOMLConfig, continual_oml
from trainer.training.loop import TrainConfig, step_decay_lr

TINY = ["--functions", "3", "--steps-per-function", "2", "--batch", "4", "--width", "8", "--eval-problems", "4",
        "--val-problems", "2", "--test-points", "10", "--lr-grid", "0.01,0.1", "--no-progress"]  # fmt: skip


def test_set_kl_equals_its_closed_form_on_a_tiny_batch():
    h = torch.tensor([[0.0, 0.3, 0.05], [0.2, 0.1, 0.05]], dtype=torch.float64)  # unit means 0.1, 0.2, 0.05
    t, eps = 0.1, 1e-4
    # only unit 1 (mean 0.2 > 0.1) counts: r = 0.1 / 0.2001; unit 0 (0.1, not above) and unit 2 do not
    r = t / (0.2 + eps)
    assert baselines.set_kl(h, t).item() == pytest.approx((r - math.log(r) - 1) / 3, rel=1e-12)
    assert baselines.set_kl(torch.zeros(4, 5), t).item() == 0.0


def test_set_kl_gradient_equals_central_differences():
    torch.manual_seed(0)
    h = torch.rand(6, 5, dtype=torch.float64) * 0.4  # unit means around 0.2: most above the target
    g = torch.autograd.grad(baselines.set_kl(h.requires_grad_(), 0.1), h)[0]
    h = h.detach()
    num = torch.zeros_like(h)
    for idx in torch.cartesian_prod(torch.arange(6), torch.arange(5)):
        d = torch.zeros_like(h)
        d[tuple(idx)] = 1e-6
        num[tuple(idx)] = (baselines.set_kl(h + d, 0.1) - baselines.set_kl(h - d, 0.1)) / 2e-6
    assert torch.allclose(g, num, rtol=1e-6, atol=1e-9) and g.abs().sum() > 0


def test_srnn_objective_is_pretraining_plus_the_weighted_penalty_on_the_representation():
    torch.manual_seed(0)
    spec = ContinualSpec(functions=2, train_pool=6)
    pool = function_pool(0, "train", spec)
    net = ContinualNet(spec.in_features, 2, 1, 8, outputs=baselines.groups(pool, spec)).double()
    params = {k: v.detach() for k, v in net.named_parameters()}
    batch = next(baselines.grouped_batches(0, pool, spec, 5, 0))
    batch = baselines.PointBatch(batch.x.double(), batch.y.double(), batch.head)
    plain = baselines.IIDRegression(net).objective(params, batch)
    srnn = baselines.IIDRegression(net, sparsity_weight=0.5, sparsity_target=0.05).objective(params, batch)
    h = torch.relu(torch.relu(batch.x @ params["layers.0.weight"].T) @ params["layers.1.weight"].T)  # zero biases
    assert srnn.item() == pytest.approx(plain.item() + 0.5 * baselines.set_kl(h, 0.05).item(), rel=1e-12)


def test_published_batches_cycle_the_groups_with_their_heads_and_targets():
    spec = ContinualSpec(functions=3, train_pool=10)
    pool = function_pool(0, "train", spec)
    assert baselines.groups(pool, spec) == 3  # the pool's whole groups of 3: function 9 is unused
    it = baselines.grouped_batches(4, pool, spec, 7, 2)
    for step in (2, 3, 4):
        b = next(it)
        g = step % 3
        assert b.x.shape == (21, 4) and (b.head == g).all()
        pos = b.x[:, 1:].argmax(1)
        amp, phase = pool[g * 3 + pos].T
        assert torch.allclose(b.y[:, 0].double(), amp * torch.sin(b.x[:, 0].double() + phase), atol=1e-5)
    again = next(baselines.grouped_batches(4, pool, spec, 7, 4))  # a pure function of (seed, step)
    assert torch.equal(again.x, b.x)


def test_head_keeps_one_output_and_step_decay_follows_multisteplr():
    net = ContinualNet(3, 1, 1, 4, outputs=5)
    params = baselines.head(dict(net.named_parameters()), net.depth, 0)
    assert params["layers.1.weight"].shape == (1, 4) and params["layers.1.bias"].shape == (1,)
    config = TrainConfig(steps=20, out="x", lr=1.0, lr_milestones=(3, 5), lr_gamma=0.5)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [3, 5], 0.5)
    for step in range(1, 9):
        assert step_decay_lr(config, step) == pytest.approx(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()


@pytest.mark.parametrize("recipe", ["ours", "published"])
def test_pretrain_and_srnn_end_to_end(tmp_path, recipe):
    r = CliRunner().invoke(app, ["continual-oml", "--out", str(tmp_path), "--methods", "pretrain,srnn", "--pretrain-steps",
                                 "3", "--pretrain-recipe", recipe, "--train-pool", "12", *TINY])  # fmt: skip
    assert r.exit_code == 0, r.output
    report = check_results(tmp_path / "results.json")
    assert set(report["methods"]) == {"pretrain", "srnn"} and "srnn_minus_pretrain" in report["comparisons"]
    details = report["extra"]["methods"]
    assert details["srnn"]["split"] in (0, 2, 4, 6, 7) and report["extra"]["published"]["srnn"] == 0.86
    lines = (tmp_path / "srnn" / "metrics.jsonl").read_text().splitlines()
    assert "set_kl" in lines[-1] and "set_kl" not in (tmp_path / "pretrain" / "metrics.jsonl").read_text()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pretrain_recipe": "paper"}, "unknown --pretrain-recipe"),
        ({"srnn_target": 0.0}, "--srnn-target must be > 0"),
        ({"srnn_weight": -1.0}, "--srnn-weight must be > 0"),
        ({"pretrain_lr": -1e-3}, "--pretrain-lr must be >= 0"),
    ],
)
def test_bad_baseline_options_are_one_line_errors(tmp_path, kwargs, message):
    with pytest.raises(FewtaskError, match=message):
        continual_oml(ContinualOMLConfig(out=tmp_path, methods="srnn", **kwargs))
