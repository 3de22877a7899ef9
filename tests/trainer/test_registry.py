"""The algorithm registry and the traits each class carries (what the commands read)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from fewtask_data import EpisodeShape, FewtaskError
from fewtask_data.sources.sinusoid import sample_batch, step_generator
from trainer.algorithms import ALGORITHMS, algorithm_class, make_algorithm, resolve_impl
from trainer.models import MLP

torch.set_num_threads(1)
HP = dict(alpha=0.03, beta=0.1, gamma=0.05, task_steps=2, meta_steps=1, goal_steps=1)
WITH_LOOP = [name for name, cls in ALGORITHMS.items() if cls.has_loop_reference()]


def test_traits_of_the_registered_algorithms():
    assert WITH_LOOP == ["maltml", "maml", "fomaml", "anil", "boil", "pretrain"]
    assert [n for n, c in ALGORITHMS.items() if c.finetune_level == "gamma"] == ["maltml", "fo-maltml"]
    assert [n for n, c in ALGORITHMS.items() if c.learns_step_sizes] == ["maltml", "fo-maltml", "maml", "fomaml", "anil", "boil"]
    assert [n for n, c in ALGORITHMS.items() if c.flat_training] == ["pretrain"]
    assert {n: c.fixed_order for n, c in ALGORITHMS.items() if c.fixed_order} == {"fomaml": 1}
    assert [n for n, c in ALGORITHMS.items() if c.trains_meta_step] == ["maltml", "fo-maltml"]
    assert make_algorithm("anil", MLP()).adapt == "head" and make_algorithm("boil", MLP()).adapt == "body"
    assert make_algorithm("fomaml", MLP()).order == 1 and make_algorithm("maml", MLP(), label="x").name == "x"


def test_a_fixed_order_cannot_be_overridden_and_unknown_names_fail():
    with pytest.raises(FewtaskError, match="fomaml has derivative order 1"):
        make_algorithm("fomaml", MLP(), order=3)
    with pytest.raises(FewtaskError, match="unknown algorithm 'mamlx'; choose one of maltml"):
        algorithm_class("mamlx")
    with pytest.raises(FewtaskError, match="pretrain cannot learn step sizes"):
        make_algorithm("pretrain", MLP(), learn_step_sizes=True)


def test_impl_loop_without_a_reference_is_a_clear_error():
    batch = sample_batch(step_generator(0, 0), 2, EpisodeShape(1, 2, 2, 2, 2, 1))
    algo = make_algorithm("fo-maltml", MLP(), impl="loop")
    with pytest.raises(FewtaskError, match="fo-maltml has no plain-loop reference"):
        algo.outer_grads({k: v.detach() for k, v in algo.model.named_parameters()}, {}, {}, batch)
    assert resolve_impl("auto", torch.device("cpu"), "reptile") == "vmap"


@pytest.mark.parametrize("name", WITH_LOOP)
def test_every_loop_reference_matches_the_fast_path(name):
    """Each class's own `loop_objective` gives the gradients of its torch.func `objective`."""
    torch.manual_seed(0)
    model = MLP(1, (8, 8), 1).double()
    batch = sample_batch(step_generator(3, 0), 2, EpisodeShape(1, 3, 3, 4, 2, 2), dtype=torch.float64)
    learn = ALGORITHMS[name].learns_step_sizes
    fast = make_algorithm(name, model, learn_step_sizes=learn, **HP)
    slow = make_algorithm(name, model, learn_step_sizes=learn, impl="loop", **HP)
    params = {k: v.detach() for k, v in model.named_parameters()}
    sizes = fast.init_step_sizes(params)
    g1, s1, m1 = fast.outer_grads(params, sizes, {}, batch)
    g2, s2, m2 = slow.outer_grads(params, sizes, {}, batch)
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], rtol=1e-9, atol=1e-12)
    assert s1.keys() == s2.keys() and all(torch.allclose(s1[k], s2[k], rtol=1e-9, atol=1e-12) for k in s1)
    assert float(m1["loss"]) == pytest.approx(float(m2["loss"]), rel=1e-12)


def test_sinusoid_settings_per_method():
    """How `sinusoid` builds each method: MAML's own inner step size, the order and learned
    step sizes only where they apply, FOMAML first order (it used to be trained as MAML)."""
    s = SimpleNamespace(alpha=0.1, beta=0.2, gamma=0.3, maml_alpha=0.4, task_steps=1, meta_steps=2, goal_steps=3,
                        order=2, meta_reduction="mean", learn_step_sizes=True, per_step_step_sizes=False, impl="vmap",
                        compile=True)  # fmt: skip
    built = {n: make_algorithm(n, MLP(), **ALGORITHMS[n].sinusoid_hparams(s)) for n in ("maltml", "maml", "fomaml", "pretrain", "fo-maltml")}
    assert (built["maltml"].alpha, built["maltml"].order, built["maltml"].learn_step_sizes) == (0.1, 2, True)
    assert (built["maml"].alpha, built["maml"].order, built["maml"].learn_step_sizes) == (0.4, 3, True)
    assert (built["fomaml"].alpha, built["fomaml"].order) == (0.4, 1)
    assert built["pretrain"].compile is False and built["fo-maltml"].compile is True
    assert built["fo-maltml"].learn_step_sizes and built["fo-maltml"].meta_steps == 2
    assert {a.meta_reduction for a in built.values()} == {"mean"}
