"""Topological losses: the Betti-number prior (no ground truth) and ground-truth diagram matching.

- :class:`TopologicalPriorLoss` (Clough et al., TPAMI 2020, Eq. 3-4), over
  :func:`prior_loss_from_diagram`;
- :class:`PersistenceMatchingLoss` (Hu et al., NeurIPS 2019), over
  :func:`matching_loss_from_diagrams` / :func:`wasserstein2_squared`;
- :class:`TopologicalWrapperLoss`: ``base(input, target) + λ · topo(input[, target])``.

Priors are plain data shared with the metrics and transforms: see :mod:`monai_topo.priors`.
"""

from monai_topo.losses.base import TopologicalLoss
from monai_topo.losses.betti_matching import BettiMatchingLoss, betti_matching_loss, loss_from_matching
from monai_topo.losses.matching import PersistenceMatchingLoss, matching_loss_from_diagrams, wasserstein2_squared
from monai_topo.losses.prior import TopologicalPriorLoss, prior_loss_from_diagram
from monai_topo.losses.wrapper import TopologicalWrapperLoss

__all__ = [
    "BettiMatchingLoss",
    "betti_matching_loss",
    "loss_from_matching",
    "PersistenceMatchingLoss",
    "TopologicalLoss",
    "TopologicalPriorLoss",
    "TopologicalWrapperLoss",
    "matching_loss_from_diagrams",
    "prior_loss_from_diagram",
    "wasserstein2_squared",
]
