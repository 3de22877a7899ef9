"""The navigation environment, the policy, returns/baseline/GAE and TRPO's pieces, against
hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from fewtask_data import FewtaskError
from trainer.domains.rl import returns
from trainer.domains.rl.env import PointEnv
from trainer.domains.rl.policy import ConstantGaussian, GaussianMLP, kl, log_prob
from trainer.domains.rl.rollout import rollout
from trainer.training.trpo import TrpoSettings, conjugate_gradient, trpo_step


def test_point_env_clips_moves_rewards_distance_and_masks_finished():
    goals = torch.tensor([[0.05, 0.0], [0.3, -0.2]])
    env = PointEnv(goals, trajectories=1, horizon=100)
    obs = env.reset()
    assert obs.shape == (2, 1, 2) and obs.abs().sum() == 0
    # action 5 is clipped to a move of 0.1; action 0.5 moves 0.05
    obs, reward, mask = env.step(torch.tensor([[[0.5, 0.0]], [[5.0, -5.0]]]))
    assert torch.allclose(obs, torch.tensor([[[0.05, 0.0]], [[0.1, -0.1]]]))
    assert torch.allclose(reward, torch.tensor([[0.0], [-math.hypot(0.2, 0.1)]]))
    assert mask.tolist() == [[1.0], [1.0]]
    # the first reached its goal (within 0.01 on both axes): it no longer moves nor earns
    obs, reward, mask = env.step(torch.tensor([[[1.0, 1.0]], [[1.0, 0.0]]]))
    assert mask.tolist() == [[0.0], [1.0]]
    assert torch.allclose(obs[0], torch.tensor([[0.05, 0.0]])) and reward[0, 0] == 0
    assert torch.allclose(obs[1], torch.tensor([[0.2, -0.1]]))


def test_done_needs_both_coordinates_within_tolerance():
    env = PointEnv(torch.tensor([[0.0995, 0.02]]), trajectories=1)
    env.reset()
    env.step(torch.tensor([[[1.0, 0.0]]]))  # x within 0.01, y 0.02 away: still running
    assert bool(env.alive.all())
    env.step(torch.tensor([[[0.0, 0.2]]]))  # both within: done
    assert not bool(env.alive.any())


def test_oracle_observation_appends_the_goal():
    env = PointEnv(torch.tensor([[0.2, -0.3]]), trajectories=3, oracle=True)
    obs = env.reset()
    assert obs.shape == (1, 3, 4) and torch.allclose(obs[0, :, 2:], torch.tensor([0.2, -0.3]).expand(3, 2))


def test_horizon_zero_is_a_user_error():
    with pytest.raises(FewtaskError, match="horizon"):
        PointEnv(torch.zeros(1, 2), trajectories=1, horizon=0)


def test_rollout_shapes_masks_and_batched_policies():
    policy = GaussianMLP(2, 2, (8,))
    theta = policy.init(torch.Generator().manual_seed(0))
    goals = torch.rand(3, 4, 2) - 0.5
    params = policy.broadcast(theta, (3, 4))
    traj = rollout(PointEnv(goals, 5, horizon=7), policy, params, torch.Generator().manual_seed(1))
    assert traj.obs.shape == (3, 4, 5, 7, 2) and traj.rewards.shape == (3, 4, 5, 7)
    assert traj.mask[..., 0].eq(1).all()
    # a mask never turns back on
    assert (traj.mask[..., 1:] <= traj.mask[..., :-1]).all()
    # log-probs of batched params equal the unbatched policy's
    assert torch.allclose(traj.log_prob(policy, params), traj.log_prob(policy, theta), atol=1e-6)


def test_gaussian_log_prob_and_kl_match_torch_distributions():
    mean, log_std = torch.randn(5, 2), torch.randn(5, 2) * 0.3
    a = torch.randn(5, 2)
    ref = torch.distributions.Normal(mean, log_std.exp())
    assert torch.allclose(log_prob(mean, log_std, a), ref.log_prob(a).sum(-1), atol=1e-6)
    m2, s2 = torch.randn(5, 2), torch.randn(5, 2) * 0.3
    other = torch.distributions.Normal(m2, s2.exp())
    assert torch.allclose(kl((mean, log_std), (m2, s2)), torch.distributions.kl_divergence(ref, other).sum(-1), atol=1e-5)


def test_constant_policy_broadcasts_over_trajectories_and_time():
    policy = ConstantGaussian(2)
    params = {"mean": torch.tensor([[1.0, 2.0]]), "log_std": torch.zeros(1, 2)}
    mean, log_std = policy.dist(params, torch.zeros(1, 3, 4, 1))
    assert mean.shape == (1, 3, 4, 2) and torch.allclose(mean[0, 2, 3], torch.tensor([1.0, 2.0]))


def test_discounted_returns_and_gae_by_hand():
    r = torch.tensor([[1.0, 2.0, 3.0, 9.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last step is past the end
    g = 0.5
    assert torch.allclose(returns.discounted_returns(r, m, g), torch.tensor([[1 + 1 + 0.75, 2 + 1.5, 3.0, 0.0]]))
    v = torch.tensor([[0.5, 1.0, -1.0, 7.0]])
    # lambda 1: A_t = G_t - V_t; lambda 0: A_t = r_t + g V_{t+1} - V_t (V = 0 past the end)
    assert torch.allclose(returns.gae(r, v, m, g, 1.0), torch.tensor([[2.75 - 0.5, 3.5 - 1.0, 3.0 + 1.0, 0.0]]))
    assert torch.allclose(returns.gae(r, v, m, g, 0.0), torch.tensor([[1 + 0.5 - 0.5, 2 - 0.5 - 1.0, 3 + 1.0, 0.0]]))


def test_linear_baseline_is_the_ridge_fit_per_task():
    torch.manual_seed(0)
    obs = torch.randn(2, 3, 5, 2)
    mask = torch.ones(2, 3, 5)
    mask[1, 0, 3:] = 0
    target = torch.randn(2, 3, 5)
    fitted = returns.linear_baseline(obs, target, mask)
    for task in range(2):
        keep = mask[task].reshape(-1).bool()
        x = returns.baseline_features(obs[task]).reshape(-1, 8)[keep].double()
        y = target[task].reshape(-1)[keep].double()
        w = torch.linalg.solve(x.T @ x + returns.RIDGE * torch.eye(8, dtype=torch.float64), x.T @ y)
        assert torch.allclose(fitted[task].reshape(-1)[keep], (x @ w).float(), atol=1e-4)
    assert fitted[1, 0, 3:].abs().sum() == 0
    # features: o, o^2, t/100, (t/100)^2, (t/100)^3, 1
    f = returns.baseline_features(obs)[0, 0, 4]
    assert torch.allclose(f, torch.cat([obs[0, 0, 4], obs[0, 0, 4] ** 2, torch.tensor([0.04, 0.0016, 0.000064, 1.0])]))


def test_conjugate_gradient_solves_an_spd_system():
    torch.manual_seed(0)
    q = torch.randn(6, 6, dtype=torch.float64)
    a = q @ q.T + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=6)
    assert torch.allclose(x, torch.linalg.solve(a, b), atol=1e-8)


def test_trpo_step_improves_within_the_kl_limit():
    """A Gaussian mean fitted to a far target: the step lands on the trust-region boundary
    (KL <= max_kl, close to it) and lowers the loss; a tiny max_kl gives a tiny step."""
    target = torch.tensor([3.0, -2.0])

    def evaluate(params, differentiate=True):
        mean, log_std = params["mean"], params["log_std"]
        loss = ((mean - target) ** 2).sum() + (log_std**2).sum()
        divergence = kl((torch.zeros(2), torch.zeros(2)), (mean, log_std))
        return loss, divergence

    start = {"mean": torch.zeros(2), "log_std": torch.zeros(2)}
    for max_kl in (0.01, 0.0001):
        new, stats = trpo_step(start, evaluate, TrpoSettings(max_kl=max_kl))
        assert stats["accepted"] == 1.0 and stats["loss_after"] < stats["loss_before"]
        assert 0.5 * max_kl < stats["kl"] <= max_kl
        assert float(evaluate(new)[1]) == pytest.approx(stats["kl"])


def test_summary_counts_diverged_adaptations_and_summarizes_the_rest():
    from trainer.evaluation.rl import describe
    from trainer.evaluation.stats import paired as paired_summary
    from trainer.evaluation.stats import summarize as summary

    returns = torch.tensor([[-40.0, -10.0], [-42.0, float("nan")], [-38.0, -14.0]])
    s = summary(returns)
    assert s["diverged"] == [0, 1]
    assert math.isnan(s["mean"][1])  # the plain mean does not hide a divergence
    assert s["finite_mean"] == pytest.approx([-40.0, -12.0])
    assert s["finite_ci95"][1] == pytest.approx(1.96 * math.sqrt(8.0) / math.sqrt(2))
    assert paired_summary(returns, returns.nan_to_num(0.0))["diverged"] == [0, 1]
    assert describe(returns).endswith("(diverged per step: [0, 1] of 3)")
    assert "diverged" not in describe(returns[[0, 2]])


def test_finetune_returns_takes_one_step_size_per_step():
    from trainer.evaluation.rl import finetune_returns
    from trainer.domains.rl.methods import RLSettings, Sampler

    policy = GaussianMLP(2, 2, (8,))
    theta = policy.init(torch.Generator().manual_seed(0))
    goals = torch.tensor([[0.3, -0.2], [-0.1, 0.4]])

    def curve(lr):
        sampler = Sampler(lambda g, n: PointEnv(g, n, 6), policy, RLSettings(trajectories=3), torch.Generator().manual_seed(1))
        return finetune_returns(sampler, theta, goals, lr, 2)

    assert torch.equal(curve(0.3), curve([0.3, 0.3]))
    assert not torch.equal(curve([0.3, 0.3]), curve([0.3, 0.05]))
    assert torch.equal(curve([0.3, 0.3])[:, :2], curve([0.3, 0.05])[:, :2])  # the second step differs only at its end
    with pytest.raises(ValueError, match="1 step sizes for 2 steps"):
        curve([0.3])


def test_mean_action_scoring_keeps_the_adaptation_and_drops_the_noise():
    from trainer.evaluation.rl import finetune_returns, mean_action_returns
    from trainer.domains.rl.methods import RLSettings, Sampler

    policy = GaussianMLP(2, 2, (8,))
    theta = policy.init(torch.Generator().manual_seed(0))
    goals = torch.tensor([[0.3, -0.2], [-0.1, 0.4]])

    def sampler(trajectories=3):
        env = lambda g, n: PointEnv(g, n, 6)  # noqa: E731
        return Sampler(env, policy, RLSettings(trajectories=trajectories), torch.Generator().manual_seed(1))

    sampled, quiet = finetune_returns(sampler(), theta, goals, 0.3, 2), finetune_returns(sampler(), theta, goals, 0.3, 2, True)
    assert quiet.shape == sampled.shape and not torch.equal(quiet, sampled)
    # a noiseless policy's sampled trajectories all follow its mean action
    still = {**theta, "log_std": torch.full_like(theta["log_std"], -30.0)}
    mean = mean_action_returns(sampler(), policy.broadcast(still, goals.shape[:-1]), goals)
    drawn = sampler(4).draw(goals, policy.broadcast(still, goals.shape[:-1]), outer=True)[0].traj.returns()
    assert torch.allclose(drawn, mean[:, None].expand_as(drawn), atol=1e-6)
