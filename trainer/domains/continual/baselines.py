"""The OML paper's baselines besides OML itself.

- scratch: a freshly initialized network learns every layer online (split 0).
- pretraining: the network is trained by plain i.i.d. regression on the meta-training
  functions (fresh points of every function of a batch of problems), then evaluated with
  its first ``split`` layers frozen, the split (and the inner step) chosen on validation
  problems ("best split").
- oracle: OML meta-trained on the evaluation pool itself (same command, other pool).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import grad

from trainer.algorithms.base import AlgorithmProtocol
from trainer.domains.continual.net import ContinualNet, Params, run_layers


@dataclass
class IIDRegression(AlgorithmProtocol):
    """Pretraining for the training loop: the MSE of the whole network on the batch's
    random points (i.i.d. points of all the problems' functions; ``--pretrain-points`` per
    function), one Adam step per batch. The trajectories are not used: same distribution,
    ten times the points, no order to exploit."""

    model: ContinualNet
    name: str = "pretrain"

    def init_step_sizes(self, params: Params) -> dict[str, torch.Tensor]:
        return {}

    def objective(self, params: Params, batch) -> torch.Tensor:
        x, y = batch.rand_x.reshape(-1, batch.rand_x.shape[-1]), batch.rand_y.reshape(-1, 1)
        depth = self.model.depth
        return F.mse_loss(run_layers(params, x, 0, depth, depth), y)

    def outer_grads(self, params: Params, step_sizes, buffers, batch):
        grads, loss = grad(lambda p: (self.objective(p, batch),) * 2, has_aux=True)(params)
        return grads, {}, {"loss": loss.detach()}
