"""Reinforcement learning on 2D navigation families (paper section 4.2): a vectorized point
environment, Gaussian MLP policies as pure functions of parameter dicts, returns and
baselines, the DiCE estimator for higher-order policy gradients, TRPO, and MAML / MALTML /
FO-MALTML / pretrain / oracle / random built from them. See docs/navigation.md."""
