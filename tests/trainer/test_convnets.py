import pytest
import torch
from torch.func import functional_call, grad, vmap

from fewtask_data import FewtaskError
from trainer.models import build_model, head_names
from trainer.models.convnets import Conv4, ResNet12, build_conv

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "name,channels,size,hidden,feat",
    [("conv4", 1, 28, 64, 64), ("conv4", 3, 84, 32, 32 * 5 * 5), ("resnet12", 3, 84, 8, 80), ("resnet12", 1, 28, 8, 80)],
)
def test_forward_shapes(name, channels, size, hidden, feat):
    model = build_conv(name, ways=5, in_channels=channels, image_size=size, hidden=hidden)
    x = torch.rand(6, channels, size, size)
    assert model.features(x).shape == (6, feat)
    assert model(x).shape == (6, 5)


def test_grayscale_without_channel_axis_and_uint8():
    model = Conv4(ways=3)
    x = (torch.rand(4, 28, 28) * 255).to(torch.uint8)
    out = model(x)
    assert out.shape == (4, 3) and torch.isfinite(out).all()


def test_bad_inputs_are_clear_errors():
    with pytest.raises(FewtaskError, match="batch-norm"):
        Conv4(ways=5, bn="running")
    with pytest.raises(FewtaskError, match="too small"):
        Conv4(ways=5, image_size=8)
    with pytest.raises(FewtaskError, match="expects images"):
        Conv4(ways=5, in_channels=3)(torch.rand(2, 1, 28, 28))
    with pytest.raises(FewtaskError, match="unknown conv model"):
        build_conv("vgg", 5, 1, 28)


def test_task_batch_norm_has_no_running_state():
    model = Conv4(ways=5)
    assert not list(model.buffers()), "task-statistics batch norm must keep no running buffers"
    assert Conv4(ways=5, bn="none").body[1].__class__.__name__ == "Identity"


@pytest.mark.parametrize("model", [Conv4(ways=5, hidden=8), ResNet12(ways=5, in_channels=1, image_size=28, widths=(4, 4, 8, 8))])
def test_vmap_over_tasks_matches_loop_and_grads_flow(model):
    torch.manual_seed(0)
    params = {k: v.detach() for k, v in model.named_parameters()}
    xs = torch.rand(3, 10, 1, 28, 28)  # 3 tasks x 10 images
    ys = torch.randint(0, 5, (3, 10))

    def loss(p, x, y):
        return torch.nn.functional.cross_entropy(functional_call(model, p, (x,)), y)

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, xs, ys)
    for t in range(3):
        ref = grad(loss)(params, xs[t], ys[t])
        for k in params:
            torch.testing.assert_close(grads[k][t], ref[k], rtol=1e-4, atol=1e-5)
    assert all(g.abs().sum() > 0 for g in grads.values()), "every parameter must receive gradient"


def test_second_order_through_inner_step():
    model = Conv4(ways=5, hidden=8)
    params = {k: v.detach().requires_grad_() for k, v in model.named_parameters()}
    x, y = torch.rand(10, 1, 28, 28), torch.randint(0, 5, (10,))

    def loss(p):
        return torch.nn.functional.cross_entropy(functional_call(model, p, (x,)), y)

    g = torch.autograd.grad(loss(params), list(params.values()), create_graph=True)
    adapted = {k: v - 0.4 * gi for (k, v), gi in zip(params.items(), g)}
    outer = torch.autograd.grad(loss(adapted), list(params.values()))
    assert all(torch.isfinite(o).all() for o in outer)


def test_registered_in_model_registry_with_a_head():
    model = build_model("resnet12", ways=5, in_channels=1, image_size=28, hidden=8)
    assert head_names(model) == {"head.weight", "head.bias"}


@pytest.mark.parametrize("algo_name,order,bn", [("maltml", 3, "task"), ("maml", 2, "task"), ("maltml", 3, "none")])
def test_exact_gradients_through_conv4_match_finite_differences(algo_name, order, bn):
    """torch.func differentiates F.batch_norm's backward wrongly at second and third order
    (seen on torch 2.14); TaskBatchNorm2d uses plain ops, so MAML (order 2) and exact MALTML
    (order 3) gradients through conv + batch norm must equal central differences (float64)."""
    from fewtask_data import EpisodeShape, FamilyBatch
    from trainer.algorithms import batch_parts, make_algorithm

    torch.manual_seed(0)
    model = build_conv("conv4", ways=2, in_channels=1, image_size=16, hidden=8, bn=bn).double()
    algo = make_algorithm(algo_name, model, alpha=0.3, beta=0.3, gamma=0.3, order=order)
    shape = EpisodeShape(ways=2, shots=1, queries=1, val=1, meta_tasks=2, goal_tasks=1)
    lab = torch.tensor([0, 1, 0, 1])
    gen = torch.Generator().manual_seed(1)
    batch = FamilyBatch(torch.rand(1, 2, 4, 1, 16, 16, dtype=torch.float64, generator=gen), lab.expand(1, 2, 4).clone(),
                        torch.rand(1, 1, 4, 1, 16, 16, dtype=torch.float64, generator=gen), lab.expand(1, 1, 4).clone(),
                        shape, ["f"])
    params = {k: v.detach() for k, v in model.named_parameters()}
    sizes = algo.init_step_sizes(params)
    grads, _, _ = algo.outer_grads(params, sizes, {}, batch)
    parts = batch_parts(batch)
    direction = {k: torch.randn(v.shape, dtype=v.dtype, generator=gen) for k, v in params.items()}
    eps = 1e-7  # batch norm over 2-image support sets makes the objective very curved

    def objective(sign):
        moved = {k: v + sign * eps * direction[k] for k, v in params.items()}
        return float(algo.objective(moved, sizes, {}, parts)[0])

    numeric = (objective(1) - objective(-1)) / (2 * eps)
    analytic = float(sum((grads[k] * direction[k]).sum() for k in params))
    assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-6)
