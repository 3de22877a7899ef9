"""MAML++'s stabilizers and the zeroing trick: off by default (today's numbers bitwise), and
with each on, third-order gradients equal central differences and the plain-loop reference."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from fewtask_data import FewtaskError
from fewtask_data.sources.sinusoid import sample_batch, step_generator
from stabilizer_cases import SHAPE, build, check_gradients, conv_case, digest, image_batch, mlp_case, rel_err
from trainer.core.stabilizers import multi_step_weights
from trainer.evaluation.protocol import episode_curves
from trainer.models import MLP, build_model
from trainer.training.loop import TrainConfig, cosine_lr, scheduled, train

torch.set_num_threads(1)

# Digests of the outer gradients (and loss), protocol curves and 3 Adam steps with every option at its
# default, recorded with the code before the stabilizers existed (commit 4768e3f), float64 on CPU.
BEFORE = {
    "mlp maltml {'order': 3}": "76caedec44546407", "mlp maltml {'order': 2}": "9af3c289e9580a3a",
    "mlp maltml {'order': 1}": "72dfb36faf2e3987", "mlp maml {}": "51f3c8b7f5e20993", "mlp fomaml {}": "67086d3a283b9e7d",
    "mlp anil {}": "7fde154fa4eb7a2e", "mlp boil {}": "f1dd777643a2a14e", "mlp reptile {}": "4e27a2b0325bca3b",
    "mlp fo-maltml {}": "7f99a5ef9fd0eb4d", "mlp pretrain {}": "bcbc4d6889ac9e19",
    "mlp maltml {'learn_step_sizes': True}": "dee5ab6d768e24d0",
    "mlp maml {'learn_step_sizes': True, 'impl': 'loop'}": "0c1c0cea44aa61b1",
    "conv4 maltml": "8c45099b1b179111", "conv4 maltml curves": "964e74a31d0338d9",
    "conv4 maml": "e327431706398f3b", "conv4 maml curves": "ab87a58bfffe190e",
    "train maltml": "d955de39de05333a", "train maml": "17dbb2247084c30c", "train reptile": "74f8255f1c53bf57",
}  # fmt: skip


def _outer_digests() -> dict:
    out = {}
    for name, kw in [("maltml", dict(order=3)), ("maltml", dict(order=2)), ("maltml", dict(order=1)), ("maml", {}),
                     ("fomaml", {}), ("anil", {}), ("boil", {}), ("reptile", {}), ("fo-maltml", {}), ("pretrain", {}),
                     ("maltml", dict(learn_step_sizes=True)), ("maml", dict(learn_step_sizes=True, impl="loop"))]:  # fmt: skip
        model, batch, params = mlp_case(0)
        algo = build(name, model, **kw)
        g, s, m = algo.outer_grads(params, algo.init_step_sizes(params), {}, batch)
        out[f"mlp {name} {kw}"] = digest({**g, **s, "loss": m["loss"]})
    for name in ("maltml", "maml"):
        torch.manual_seed(0)
        model = build_model("conv4", ways=3, in_channels=1, image_size=16, hidden=4).double()
        params = {k: v.detach() for k, v in model.named_parameters()}
        algo, batch = build(name, model), image_batch(1)
        g, _, m = algo.outer_grads(params, algo.init_step_sizes(params), {}, batch)
        out[f"conv4 {name}"] = digest({**g, "loss": m["loss"]})
        curves = episode_curves(algo, params, algo.init_step_sizes(params), {}, [batch], 2)
        out[f"conv4 {name} curves"] = digest({f"{p}/{k}": v for p, c in curves.items() for k, v in c.items()})
    return out


def _train_digests() -> dict:
    out = {}
    for name in ("maltml", "maml", "reptile"):
        torch.manual_seed(0)
        model = MLP(1, (8, 8), 1).double()
        algo = build(name, model)
        batches = lambda start: (sample_batch(step_generator(0, i), 2, SHAPE, dtype=torch.float64) for i in range(start, 100))  # noqa: E731
        with tempfile.TemporaryDirectory() as d:
            res = train(model, algo, batches, TrainConfig(steps=3, out=Path(d), progress=False, lr=0.01))
        out[f"train {name}"] = digest({**res.params, **res.step_sizes})
    return out


def test_defaults_keep_the_numbers_bitwise():
    got = {**_outer_digests(), **_train_digests()}
    assert got == BEFORE


def test_multi_step_weights_anneal_from_uniform_to_the_last_step():
    assert multi_step_weights(4, 0, 100) == [0.25] * 4
    mid = multi_step_weights(4, 50, 100)
    assert sum(mid) == pytest.approx(1) and mid[0] < 0.25 < mid[-1]
    late = multi_step_weights(4, 99, 100)
    assert late[0] == pytest.approx(0.03 / 4) and sum(late) == pytest.approx(1)
    assert multi_step_weights(4, 100, 100) is None and multi_step_weights(1, 0, 100) is None


@pytest.mark.parametrize("name", ["maltml", "maml"])
@pytest.mark.parametrize("step", [0, 7])
def test_multi_step_loss_gradients(name, step):
    model, batch, params = mlp_case(1)
    algo = build(name, model, multi_step_loss=True, msl_anneal_steps=10, learn_step_sizes=True)
    algo.set_outer_step(step)
    plain = build(name, model, learn_step_sizes=True)
    sizes = algo.init_step_sizes(params)
    g = check_gradients(algo, params, sizes, batch)
    assert rel_err(g, plain.outer_grads(params, sizes, {}, batch)[0]) > 1e-3  # the option changes the objective
    algo.set_outer_step(10)  # annealed: the plain objective exactly
    assert torch.equal(algo.objective(params, sizes, {}, _parts(batch))[0], plain.objective(params, sizes, {}, _parts(batch))[0])


def _parts(batch):
    from trainer.algorithms import batch_parts

    return batch_parts(batch)


@pytest.mark.parametrize("both", [False, True])
def test_meta_level_multi_step_loss_gradients(both):
    model, batch, params = mlp_case(2)
    algo = build("maltml", model, meta_multi_step_loss=True, multi_step_loss=both, msl_anneal_steps=4)
    algo.set_outer_step(1)
    check_gradients(algo, params, algo.init_step_sizes(params), batch)


@pytest.mark.parametrize("name", ["maltml", "maml", "anil"])
def test_zeroing_trick_gradients_and_no_head_gradient(name):
    model, batch, params = mlp_case(3)
    algo = build(name, model, zero_head=True)
    g = check_gradients(algo, params, algo.init_step_sizes(params), batch)
    if name != "anil":
        assert float(g["head.weight"].abs().max()) == 0.0 and float(g["body.0.weight"].abs().max()) > 0
    shifted = {k: v + 1.0 if k.startswith("head.") else v for k, v in params.items()}  # the head's init never matters
    assert torch.equal(algo.outer_grads(shifted, algo.init_step_sizes(params), {}, batch)[0]["body.0.weight"], g["body.0.weight"])


def test_zeroing_trick_for_reptile_leaves_the_head_alone_and_pretrain_refuses_it():
    model, batch, params = mlp_case(3)
    algo = build("reptile", model, zero_head=True)
    g = algo.outer_grads(params, algo.init_step_sizes(params), {}, batch)[0]
    assert float(g["head.weight"].abs().max()) == 0.0 and float(g["body.0.weight"].abs().max()) > 0
    with pytest.raises(FewtaskError, match="zero-head"):
        build("pretrain", model, zero_head=True)
    with pytest.raises(FewtaskError, match="multi-step-loss"):
        build("reptile", model, multi_step_loss=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maltml", "maml"])
def test_per_step_batch_norm_weights_gradients(name):
    """MAML++'s per-step batch-norm weights on a tiny float64 conv4, order 3."""
    model, batch, params = conv_case(4, bn_steps=2)
    assert params["body.1.weight"].shape == (3, 2)
    gen = torch.Generator().manual_seed(0)
    params = {k: v + 0.2 * torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params.items()}
    algo = build(name, model, goal_steps=2, task_steps=2, meta_steps=1)
    g = check_gradients(algo, params, algo.init_step_sizes(params), batch, directions=2, eps_list=(1e-6, 1e-7, 1e-8))
    rows = g["body.1.weight"].abs().sum(1)
    assert bool((rows > 0).all())  # every step's row is used and trained


def test_per_step_batch_norm_rows_follow_the_inner_step():
    from trainer.core.stabilizers import at_inner_step

    model, batch, params = conv_case(5, bn_steps=2)
    with torch.no_grad():
        for layer in (model.body[1],):
            layer.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]))
    x = batch.goal_x[0, 0]
    outs = []
    for s in (0, 1, 2, 5):
        with at_inner_step(s):
            outs.append(model(x))
    assert not torch.equal(outs[0], outs[1]) and not torch.equal(outs[1], outs[2]) and torch.equal(outs[2], outs[3])


def test_derivative_order_annealing_and_cosine_rate():
    model, batch, params = mlp_case(4)
    algo = build("maltml", model, order=3)
    cfg = TrainConfig(steps=10, out=Path(tempfile.mkdtemp()), first_order_steps=3, cosine_lr=True, min_lr=1e-5)
    early, late = scheduled(algo, 3, cfg), scheduled(algo, 4, cfg)
    assert early.order == 1 and late is algo
    sizes = algo.init_step_sizes(params)
    first = build("maltml", model, order=1).outer_grads(params, sizes, {}, batch)[0]
    assert all(torch.equal(early.outer_grads(params, sizes, {}, batch)[0][k], first[k]) for k in first)
    assert cosine_lr(cfg, 1) == pytest.approx(1e-3) and cosine_lr(cfg, 6) == pytest.approx((1e-3 + 1e-5) / 2)
    assert cosine_lr(cfg, 10) > 1e-5
    with pytest.raises(FewtaskError, match="min-lr"):
        TrainConfig(steps=1, out=cfg.out, min_lr=1.0)


def test_annealed_training_resumes_exactly(tmp_path):
    """Cosine rate and order annealing depend on the step alone: a run of 4 steps killed after
    its step-2 checkpoint and resumed ends where an uninterrupted run does."""

    def run(out, resume, stop_at=None):
        torch.manual_seed(0)
        model = MLP(1, (8, 8), 1).double()
        algo = build("maltml", model, multi_step_loss=True, msl_anneal_steps=3)

        def batches(start):
            for i in range(start, 100):
                if i == stop_at:
                    raise KeyboardInterrupt
                yield sample_batch(step_generator(0, i), 2, SHAPE, dtype=torch.float64)

        cfg = TrainConfig(steps=4, out=out, progress=False, lr=0.01, resume=resume, first_order_steps=2,
                          cosine_lr=True, min_lr=1e-4, checkpoint_every=2)  # fmt: skip
        return train(model, algo, batches, cfg).params

    whole = run(tmp_path / "a", False)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", False, stop_at=2)
    resumed = run(tmp_path / "b", True)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
