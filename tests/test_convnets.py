import pytest
import torch
from torch.func import functional_call, grad, vmap

from fewtask_data import FewtaskError
from trainer.convnets import Conv4, ResNet12, build_conv
from trainer.models import build_model, head_names

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
