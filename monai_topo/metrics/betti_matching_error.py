"""Betti matching error: the topological features of a binary segmentation that have no partner at the same place."""

from __future__ import annotations

import numpy as np
import torch
from monai.utils import MetricReduction

from monai_topo.metrics.base import ReducedMetric, check_binary, segmentation_pair
from monai_topo.ph import DEFAULT_CONNECTIVITY, check_connectivity
from monai_topo.ph.induced_matching import betti_matching


def compute_betti_matching_error(
    y_pred, y, include_background: bool = False, connectivity: str = DEFAULT_CONNECTIVITY
) -> torch.Tensor:
    """Betti matching errors of binary segmentations (Stucki et al., ICML 2023).

    For each item and channel and each homology dimension k, the number of features (bars) of the
    prediction and of the truth that the Betti matching (:func:`monai_topo.ph.induced_matching.betti_matching`,
    through ``max(y_pred, y)``) leaves unmatched: a feature counts as right only where the other mask
    has one at the same place, so unlike the Betti number error two wrong features do not cancel.
    The last column is the sum over k. The component that contains the image's first voxel in
    both masks (the essential one) is not counted, as in Betti-Matching-3D.

    Parameters
    ----------
    y_pred, y : torch.Tensor or numpy.ndarray, shape (B, C, H, W) or (B, C, D, H, W)
        Binarised prediction and ground truth.
    include_background : bool
        Whether to score channel 0 of a multi-channel input (a single channel is always scored).
    connectivity : {"full", "face"}
        Foreground adjacency: ``"full"`` 8 (2D) / 26 (3D), ``"face"`` 4 / 6 (Betti-Matching-3D's).

    Returns
    -------
    torch.Tensor of float32, shape (B, C', d + 1)
        ``[..., k]`` the error in dimension k, ``[..., d]`` the total.

    Examples
    --------
    >>> import torch
    >>> ring = torch.zeros(1, 1, 9, 9)
    >>> ring[..., 1:8, 1:7] = 1
    >>> ring[..., 3:6, 2:5] = 0
    >>> compute_betti_matching_error(torch.roll(ring, 1, -1), ring)  # the holes overlap: matched
    tensor([[[0., 0., 0.]]])
    >>> far = torch.zeros(1, 1, 9, 9)
    >>> far[..., 0:3, 0:3] = 1
    >>> far[..., 1, 1] = 0                                # a small ring elsewhere
    >>> compute_betti_matching_error(far, ring)           # both holes unmatched
    tensor([[[0., 2., 2.]]])
    """
    connectivity = check_connectivity(connectivity)
    y_pred, y = segmentation_pair(y_pred, y, include_background)
    if y is None:
        raise ValueError("y (the binarised ground truth) is required for the Betti matching error.")
    pred = check_binary(y_pred, "y_pred").cpu().numpy().astype(np.float32)
    truth = check_binary(y, "y").cpu().numpy().astype(np.float32)
    ndim = pred.ndim - 2
    table = np.zeros((*pred.shape[:2], ndim + 1), np.float32)
    for b, c in np.ndindex(*pred.shape[:2]):
        matching = betti_matching(pred[b, c], truth[b, c], connectivity)
        for k in range(ndim):
            table[b, c, k] = len(matching.unmatched_prediction[k]) + len(matching.unmatched_target[k])
    table[..., ndim] = table[..., :ndim].sum(-1)
    return torch.as_tensor(table, device=y_pred.device)


class BettiMatchingErrorMetric(ReducedMetric):
    """Betti matching error of binarised segmentations, accumulated over iterations (lower is better).

    Parameters
    ----------
    include_background : bool
        Whether to score channel 0 of a multi-channel input (a single channel is always scored).
    reduction : str or MetricReduction
        As MONAI's metrics; default ``"mean"``.
    get_not_nans : bool
        Whether :meth:`aggregate` returns ``(value, not_nans)``.
    connectivity : {"full", "face"}
        Foreground adjacency; default ``"full"``.
    homology_dim : int, optional
        Score only the error in this homology dimension; default ``None``, the total.

    See Also
    --------
    compute_betti_matching_error : the definition.

    Examples
    --------
    >>> import torch
    >>> ring = torch.zeros(2, 1, 9, 9)
    >>> ring[..., 1:8, 1:7] = 1
    >>> ring[..., 3:6, 2:5] = 0
    >>> disc = ring.clone()
    >>> disc[1, :, 3:6, 2:5] = 1                # the second item's hole is filled
    >>> BettiMatchingErrorMetric(reduction="none")(disc, ring)
    tensor([[0.],
            [1.]])
    """

    def __init__(
        self,
        include_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
        connectivity: str = DEFAULT_CONNECTIVITY,
        homology_dim: int | None = None,
    ) -> None:
        super().__init__(include_background, reduction, get_not_nans)
        self.connectivity = check_connectivity(connectivity)
        if homology_dim is not None and (
            isinstance(homology_dim, bool) or not isinstance(homology_dim, int) or not 0 <= homology_dim <= 2
        ):
            raise ValueError(f"homology_dim must be None (the total) or 0, 1 or 2, got {homology_dim!r}.")
        self.homology_dim = homology_dim

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        errors = compute_betti_matching_error(y_pred, y, self.include_background, self.connectivity)
        if self.homology_dim is None:
            return errors[..., -1]
        if self.homology_dim >= errors.shape[-1] - 1:
            raise ValueError(f"homology_dim={self.homology_dim} does not exist for {errors.shape[-1] - 1}D images.")
        return errors[..., self.homology_dim]
