"""The representation analysis (trainer/evaluation/{activations,analysis}.py): layers are
recorded from the pure forward, a layer nobody changed is found unchanged, and the
ablation grid is the protocol's own curve with other parameter subsets."""

import pytest
import torch

from fewtask_data import EpisodeShape, FewtaskError
from fewtask_data.sources import sinusoid
from trainer.algorithms import make_algorithm
from trainer.evaluation import analysis
from trainer.evaluation.activations import as_rows, check_layers, default_layers, record, row_subset
from trainer.evaluation.protocol import family_curves, own_step_sizes
from trainer.models import MLP, build_model

torch.set_num_threads(1)
SHAPE = EpisodeShape(ways=1, shots=5, queries=5, val=40, meta_tasks=3, goal_tasks=2)


def setup(algorithm, adapt="all", seed=0):
    torch.manual_seed(seed)
    model = MLP(1, (16, 16), 1).double()
    algo = make_algorithm(algorithm, model, alpha=0.05, beta=0.1, gamma=0.05, adapt=adapt)
    params = {k: v.detach() for k, v in model.named_parameters()}
    batch = sinusoid.sample_batch(torch.Generator().manual_seed(seed + 1), 3, SHAPE, dtype=torch.float64)
    return analysis.Analyzed(algorithm, algo, params, algo.init_step_sizes(params), {}), [batch]


def test_default_layers_and_recorded_activations():
    mlp = MLP(1, (8, 8), 1)
    assert default_layers(mlp) == ["body.1", "body.3", "head"]
    conv = build_model("conv4", ways=5, in_channels=1, image_size=16, hidden=4)
    assert default_layers(conv) == ["body.3", "body.7", "body.11", "body.15", "head"]
    algo = make_algorithm("maml", conv)
    params = dict(conv.named_parameters())
    x = torch.rand(6, 1, 16, 16)
    acts = record(conv, algo.forward, params, {}, x, default_layers(conv))
    torch.testing.assert_close(acts["head"], conv(x))
    assert acts["body.3"].shape == (6, 4, 8, 8) and as_rows(acts["body.3"]).shape == (6 * 64, 4)
    assert not any(m._forward_hooks for m in conv.modules())  # hooks are removed


def test_an_unknown_layer_is_a_one_line_error_naming_the_choices():
    with pytest.raises(FewtaskError, match=r"no layer body\.9 in this MLP; use --layers with names from: body\.1"):
        check_layers(MLP(1, (8, 8), 1), ["body.9"])


def test_row_subsets_are_seeded_and_bounded():
    draw = lambda: row_subset(1000, 50, torch.Generator().manual_seed(3))  # noqa: E731
    assert torch.equal(draw(), draw()) and len(draw()) == 50 and len(set(draw().tolist())) == 50
    assert row_subset(40, 50, torch.Generator()) is None and row_subset(40, 0, torch.Generator()) is None


def test_a_head_only_learner_changes_the_head_and_nothing_else():
    """The known case: ANIL adapts only the head at both levels, so every body layer is
    identical at theta, theta' and phi (similarity exactly 1) and the head is not."""
    m, batches = setup("anil", adapt="head")
    layers = default_layers(m.algo.model)
    sims = analysis.similarities(m, batches, layers, ["cka", "svcca"], steps=5)
    for measure in ("cka", "svcca"):
        for pair in analysis.PAIRS:
            for layer in ("body.1", "body.3"):
                assert torch.allclose(sims[measure][pair][layer], torch.ones(3, dtype=torch.float64)), (measure, pair)
    assert (sims["cka"]["theta_to_phi"]["head"] < 0.999).all()


def test_a_full_learner_moves_the_body():
    m, batches = setup("maml")
    sims = analysis.similarities(m, batches, default_layers(m.algo.model), ["cka"], steps=5)
    assert (sims["cka"]["theta_to_phi"]["body.3"] < 1 - 1e-6).all()


def test_the_ablation_grid_is_the_protocols_curve_with_other_subsets():
    m, batches = setup("maltml")
    grid = analysis.ablation_grid(m, batches, steps=2)
    sizes = own_step_sizes(m.algo, m.step_sizes)
    loss, _ = family_curves(m.algo, m.params, sizes, {}, batches[0], 2, True)
    torch.testing.assert_close(grid["all"]["all"]["loss"], loss[:, 2].double())
    anil, _ = setup("anil", adapt="head")
    plain, _ = family_curves(anil.algo, anil.params, own_step_sizes(anil.algo, anil.step_sizes), {}, batches[0], 2, False)
    torch.testing.assert_close(grid["none"]["head"]["loss"], plain[:, 2].double())
    assert set(grid) == {"none", "all", "head", "body"} and "accuracy" not in grid["all"]["all"]
    assert not torch.allclose(grid["all"]["head"]["loss"], grid["all"]["all"]["loss"])


def test_per_family_parameters_compare_each_familys_own_model():
    m, batches = setup("maml")
    stacked = {k: torch.stack([v, v + 0.01 * torch.randn_like(v), v]) for k, v in m.params.items()}
    each = analysis.Analyzed("oracle", m.algo, stacked, m.step_sizes, {}, per_family=True)
    ours = analysis.similarities(each, batches, ["head"], ["cka"], steps=1)["cka"]["theta_to_phi"]["head"]
    shared = analysis.similarities(m, batches, ["head"], ["cka"], steps=1)["cka"]["theta_to_phi"]["head"]
    assert ours[0] == shared[0] and ours[2] == shared[2] and ours[1] != shared[1]
