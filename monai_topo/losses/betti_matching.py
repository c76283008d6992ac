"""The Betti matching loss (Stucki et al., ICML 2023): bars matched through the comparison image."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.utils import LossReduction

from monai_topo.losses.base import TopologicalLoss
from monai_topo.losses.matching import PersistenceMatchingLoss
from monai_topo.ph import DEFAULT_CONNECTIVITY, check_connectivity
from monai_topo.ph.host import probability_values, resolve_workers, thread_pool
from monai_topo.ph.induced_matching import BettiMatching, betti_matching
from monai_topo.validation import check_bool


def loss_from_matching(prediction: torch.Tensor, target: torch.Tensor, matching: BettiMatching) -> torch.Tensor:
    """The Betti matching loss of one map pair from its matching.

    ``2 Σ_matched |(b_P, d_P) - (b_G, d_G)|² + Σ_unmatched (b - d)²`` over every homology
    dimension, both maps' unmatched bars going to the diagonal: Betti-Matching-3D's loss (its
    factor 2 on matched pairs included). Values are gathered from the maps, so the gradient
    reaches the critical voxels only.

    Parameters
    ----------
    prediction, target : torch.Tensor
        The two maps (any shape; flat indices address them in C order).
    matching : BettiMatching
        From :func:`monai_topo.ph.induced_matching.betti_matching`.

    Returns
    -------
    torch.Tensor
        A scalar.
    """
    return loss_per_item(prediction[None], target[None], [matching])[0]


def loss_per_item(prediction: torch.Tensor, target: torch.Tensor, matchings: list[BettiMatching]) -> torch.Tensor:
    """:func:`loss_from_matching` of each of ``n`` map pairs ``(n, *spatial)``, shape ``(n,)``.

    One gather per map over the whole stack: each gather's backward writes a stack-sized gradient,
    so one per item or per kind of bar would cost more than the bars (measured: 30 ms of a 16x256x256
    batch's backward with six).
    """
    n, size = prediction.shape[0], prediction[0].numel()
    p, g = prediction.reshape(-1), target.reshape(-1).to(prediction)

    def stacked(tables, width):  # every item's tables of every dimension, offset into the stack
        parts = [table + i * size for i, matching in enumerate(matchings) for table in tables(matching)]
        items = [np.full(len(table), i) for i, matching in enumerate(matchings) for table in tables(matching)]
        return (np.concatenate(parts or [np.zeros((0, width), np.int64)]),
                np.concatenate(items or [np.zeros(0, np.int64)]))

    matched, matched_items = stacked(lambda m: m.matched, 4)  # columns: P birth, P death, G birth, G death
    lonely_p, lonely_p_items = stacked(lambda m: m.unmatched_prediction, 2)
    lonely_g, lonely_g_items = stacked(lambda m: m.unmatched_target, 2)
    device = prediction.device
    p_at = p.index_select(0, torch.from_numpy(np.concatenate([matched[:, :2].ravel(), lonely_p.ravel()])).to(device))
    g_at = g.index_select(0, torch.from_numpy(np.concatenate([matched[:, 2:].ravel(), lonely_g.ravel()])).to(device))
    k = 2 * len(matched)
    p_matched, p_lonely = p_at[:k].reshape(-1, 2), p_at[k:].reshape(-1, 2)
    g_matched, g_lonely = g_at[:k].reshape(-1, 2), g_at[k:].reshape(-1, 2)
    values = torch.cat([2 * (p_matched - g_matched).square().sum(1), (p_lonely[:, 0] - p_lonely[:, 1]).square(),
                        (g_lonely[:, 0] - g_lonely[:, 1]).square()])
    items = torch.from_numpy(np.concatenate([matched_items, lonely_p_items, lonely_g_items])).to(device)
    return p.new_zeros(n).index_add(0, items, values)


def betti_matching_loss(
    prediction: torch.Tensor, target: torch.Tensor, connectivity: str = DEFAULT_CONNECTIVITY
) -> torch.Tensor:
    """Betti matching loss of one prediction against one target (2D or 3D maps of one shape).

    Examples
    --------
    >>> import torch
    >>> ring = torch.zeros(9, 9)
    >>> ring[1:8, 1:7] = 1
    >>> ring[3:6, 2:5] = 0                   # a ring with a 3x3 hole
    >>> disc = torch.zeros(9, 9)
    >>> disc[1:8, 1:7] = 1
    >>> betti_matching_loss(ring, disc).item()            # the hole (1, 0) is unmatched
    1.0
    >>> shifted = torch.roll(ring, 1, dims=1) * 0.8        # matched to the ring's hole
    >>> round(betti_matching_loss(shifted, ring).item(), 4)  # 2 * (0.8 - 1)^2
    0.08
    """
    check_connectivity(connectivity)
    matching = betti_matching(
        probability_values(prediction, "prediction"), probability_values(target, "target"), connectivity
    )
    return loss_from_matching(prediction, target, matching)


class BettiMatchingLoss(TopologicalLoss):
    """Betti matching loss (Stucki et al., ICML 2023) between a prediction and its ground truth.

    For each item and channel the bars of the prediction and of the target (super-level
    filtrations, every homology dimension) are matched through the comparison image
    ``max(prediction, target)`` (:func:`monai_topo.ph.induced_matching.betti_matching`, whose result
    lists the matched and unmatched bars by critical voxel), and the loss is
    :func:`loss_from_matching`: matched bars pulled together, unmatched ones pushed to the
    diagonal. Unlike :class:`PersistenceMatchingLoss`, a bar is only matched to a bar at the same
    place. With ``connectivity="face"`` this is the loss of Betti-Matching-3D (``topolosses``'
    ``BettiMatchingLoss`` with ``use_base_loss=False``); the essential component is left out as
    there. Gradients reach the prediction's critical voxels only.

    Parameters
    ----------
    to_onehot_y : bool
        Convert a ``(B, 1, ...)`` label-index target to one-hot with ``input.shape[1]`` classes.
    connectivity, include_background, sigmoid, softmax, other_act, num_workers
        As in :class:`TopologicalPriorLoss`.
    reduction : {"mean", "sum", "none"}
        ``"none"``: shape ``(B, C, 1, 1[, 1])``.

    Examples
    --------
    >>> import torch
    >>> target = torch.zeros(2, 1, 16, 16)
    >>> target[:, :, 4:12, 4:12] = 1
    >>> target[:, :, 7:9, 7:9] = 0            # a ring
    >>> logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    >>> BettiMatchingLoss(sigmoid=True)(logits, target).backward()
    >>> BettiMatchingLoss()(target, target).item()
    0.0
    """

    requires_target = True
    _target = PersistenceMatchingLoss._target  # the same target checks and one-hot conversion

    def __init__(
        self,
        to_onehot_y: bool = False,
        connectivity: str = DEFAULT_CONNECTIVITY,
        include_background: bool = True,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: Callable | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
        num_workers: int | None = None,
    ) -> None:
        super().__init__(connectivity, include_background, sigmoid, softmax, other_act, reduction, num_workers)
        self.to_onehot_y = check_bool(to_onehot_y, "to_onehot_y")

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Betti-match ``input`` against ``target``.

        Parameters
        ----------
        input : torch.Tensor, shape (B, C, H, W) or (B, C, D, H, W)
            Probabilities, or logits with ``sigmoid``/``softmax``/``other_act``.
        target : torch.Tensor, same shape (or (B, 1, ...) labels with ``to_onehot_y``)
            Binary mask or soft map with values in [0, 1].

        Returns
        -------
        torch.Tensor
            Reduced as ``reduction`` says.
        """
        probs = self.activate(input)
        target = self._target(target, probs)
        probs, target = self.drop_background(probs), self.drop_background(target)
        batch, channels = probs.shape[:2]
        p_items, g_items = (_host_items(x) for x in (probs, target))
        workers = resolve_workers(self.num_workers)
        pool = thread_pool(workers) if workers > 1 else None
        if pool is not None and len(p_items) >= workers:  # a batch: one item per thread
            matchings = list(pool.map(lambda p, g: betti_matching(p, g, self.connectivity), p_items, g_items))
        else:  # a few large items: their stages in parallel
            matchings = [betti_matching(p, g, self.connectivity, pool=pool) for p, g in zip(p_items, g_items)]
        loss = loss_per_item(probs.reshape(-1, *probs.shape[2:]), target.reshape(-1, *target.shape[2:]), matchings)
        return self.reduce(loss.reshape(batch, channels), input.ndim - 2)


def _host_items(x: torch.Tensor) -> np.ndarray:
    """``(B * C, *spatial)`` float32/float64 host copy of a checked map, for the engine."""
    x = x.detach().reshape(-1, *x.shape[2:])
    return np.ascontiguousarray((x if x.dtype in (torch.float32, torch.float64) else x.float()).cpu().numpy())


__all__ = ["BettiMatchingLoss", "betti_matching_loss", "loss_from_matching", "loss_per_item"]
