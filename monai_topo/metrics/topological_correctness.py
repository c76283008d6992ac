"""Topological correctness: whether a binary segmentation has exactly the expected Betti numbers."""

from __future__ import annotations

import torch

from monai_topo.metrics.betti_error import BettiComparisonMetric, compute_betti_error
from monai_topo.ph import DEFAULT_CONNECTIVITY


def _correct_where_no_error(errors: torch.Tensor) -> torch.Tensor:
    total = errors[..., -1]
    return torch.where(torch.isnan(total), total, (total == 0).to(total.dtype))


def compute_topological_correctness(
    y_pred,
    y=None,
    prior=None,
    include_background: bool = False,
    connectivity: str = DEFAULT_CONNECTIVITY,
    ignore_empty: bool = False,
) -> torch.Tensor:
    """1 where every Betti number of the prediction matches the truth (or lies in the prior), else 0.

    Parameters
    ----------
    y_pred, y, prior, include_background, connectivity, ignore_empty
        As in :func:`monai_topo.metrics.compute_betti_error`: give either the binarised ground
        truth ``y`` or one Betti prior per item.

    Returns
    -------
    torch.Tensor of float32, shape (B, C')
        1.0 (correct) or 0.0 per item and scored channel; NaN where excluded. Its mean over items
        is the "proportion topologically correct" of Clough et al. (TPAMI 2020).

    Examples
    --------
    >>> import torch
    >>> from monai_topo.metrics import compute_topological_correctness
    >>> rings = torch.zeros(2, 1, 7, 7)
    >>> rings[..., 1:6, 1:6] = 1
    >>> rings[..., 3, 3] = 0
    >>> rings[1, 0, 3, 1:3] = 0  # the second ring is broken
    >>> compute_topological_correctness(rings, prior=[(1, 1), (1, 1)])
    tensor([[1.],
            [0.]])
    """
    return _correct_where_no_error(
        compute_betti_error(y_pred, y, prior, include_background, connectivity, ignore_empty)
    )


class TopologicalCorrectnessMetric(BettiComparisonMetric):
    """Proportion of topologically correct segmentations, accumulated over iterations.

    Scores every item and channel 1 when all its Betti numbers match the ground truth ``y`` (or
    lie in the prior), 0 otherwise, and reduces like MONAI's metrics: with ``reduction="mean"``
    the result is the fraction of correct items (NaN entries excluded).

    Parameters
    ----------
    include_background : bool
        Whether to score channel 0 of a multi-channel input (a single channel is always scored).
    reduction : str or MetricReduction
        ``"mean"`` (default), ``"sum"`` (the number correct), ``"mean_batch"``, ``"sum_batch"``,
        ``"mean_channel"``, ``"sum_channel"`` or ``"none"``.
    get_not_nans : bool
        Whether :meth:`aggregate` returns ``(value, not_nans)``.
    connectivity : {"full", "face"}
        Foreground adjacency; default ``"full"`` (8-connected in 2D, 26 in 3D).
    prior : sequence, optional
        One Betti prior for every item, e.g. ``(1, 1)``; then call the metric without ``y``.
        A per-item ``prior=`` given at call time takes precedence.
    ignore_empty : bool
        With a ground truth: score NaN where its channel is empty.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.metrics import TopologicalCorrectnessMetric
    >>> rings = torch.zeros(4, 1, 7, 7)
    >>> rings[..., 1:6, 1:6] = 1
    >>> rings[..., 3, 3] = 0
    >>> rings[3, 0, 3, 1:3] = 0  # one broken ring out of four
    >>> metric = TopologicalCorrectnessMetric(prior=(1, 1))
    >>> _ = metric(rings[:2])
    >>> _ = metric(rings[2:])
    >>> metric.aggregate()
    tensor([0.7500])
    """

    def _score(self, errors: torch.Tensor) -> torch.Tensor:
        return _correct_where_no_error(errors)
