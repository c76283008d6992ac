"""The persistence-diagram matching loss of Hu et al. (NeurIPS 2019): topology against a ground truth."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks import one_hot
from monai.utils import LossReduction
from scipy.optimize import linear_sum_assignment

from monai_topo.losses.base import (
    TopologicalLoss,
    check_probability_map,
    loss_table,
    plain_tensor,
    zero_gradient_where_constant,
)
from monai_topo.ph import DEFAULT_CONNECTIVITY, PersistenceDiagram, batch_persistence
from monai_topo.validation import check_bool


def _pairable(gain: np.ndarray) -> np.ndarray:
    """Rows of ``gain`` (pairing cost saved over sending both points to the diagonal) that some
    optimal matching pairs; the other rows can go to the diagonal.

    A row pairs only with a positive gain, and only with a column of which it is among the
    ``k = n_columns`` best rows: were ``k`` better rows there, one of them would be free to take
    its place. On real diagrams this sets aside most of the many short noise bars (and all but
    ``k`` rows when the target is a binary mask, whose points are all ``(1, 0)``), which keeps
    the assignment problem small.
    """
    rows, columns = gain.shape
    if rows > columns > 0:
        best = np.argpartition(-gain, columns - 1, axis=0)[:columns]
        among_best = np.zeros(gain.shape, bool)
        np.put_along_axis(among_best, best, True, axis=0)
        gain = np.where(among_best, gain, 0)
    return np.flatnonzero((gain > 0).any(1))


def _points_array(points, name: str) -> np.ndarray:
    """The ``(n, 2)`` float64 numpy copy of a diagram's points, checked."""
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of (birth, death) points, got {type(points).__name__}.")
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2), one (birth, death) row per point, got {tuple(points.shape)}.")
    if points.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {points.dtype}.")
    array = points.detach().cpu().double().numpy()
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or Inf values.")
    return array


def wasserstein2_squared(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared 2-Wasserstein distance between two diagrams of ``(birth, death)`` points.

    The cost of matching two points is their squared Euclidean distance; a point left unmatched
    goes to its orthogonal projection on the diagonal, at cost ``(birth - death)² / 2``. The
    optimal matching is found exactly by :func:`scipy.optimize.linear_sum_assignment` on the
    diagonal-augmented ``(n + m) × (n + m)`` cost matrix, after setting aside the points that
    some optimal matching leaves on the diagonal (see ``_pairable``). This equals
    ``gudhi.wasserstein.wasserstein_distance(a, b, order=2, internal_p=2) ** 2``.

    Parameters
    ----------
    prediction, target : torch.Tensor, shape (n, 2) and (m, 2)
        Points ``(birth, death)``; differentiable (the matching itself is piecewise constant).

    Returns
    -------
    torch.Tensor
        A scalar.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.losses import wasserstein2_squared
    >>> a = torch.tensor([[1.0, 0.0], [0.6, 0.5]])
    >>> b = torch.tensor([[0.9, 0.0]])
    >>> round(float(wasserstein2_squared(a, b)), 4)   # 0.1² + 0.1²/2 (short bar to the diagonal)
    0.015
    """
    pred, targ = (_points_array(p, name) for p, name in ((prediction, "prediction"), (target, "target")))
    pred_to_diagonal = (pred[:, 0] - pred[:, 1]) ** 2 / 2
    target_to_diagonal = (targ[:, 0] - targ[:, 1]) ** 2 / 2
    pair_cost = ((pred[:, None, :] - targ[None, :, :]) ** 2).sum(-1)
    gain = pred_to_diagonal[:, None] + target_to_diagonal[None, :] - pair_cost
    pred_idx, targ_idx = _pairable(gain), _pairable(gain.T)
    n, m = len(pred_idx), len(targ_idx)
    # Rows: prediction points, then the diagonal copies of target points. Columns: target points,
    # then the diagonal copies of prediction points. A point may only go to its own diagonal copy.
    cost = np.full((n + m, m + n), np.inf)
    cost[:n, :m] = pair_cost[np.ix_(pred_idx, targ_idx)]
    cost[np.arange(n), m + np.arange(n)] = pred_to_diagonal[pred_idx]
    cost[n + np.arange(m), np.arange(m)] = target_to_diagonal[targ_idx]
    cost[n:, m:] = 0
    rows, cols = linear_sum_assignment(cost)
    matched = (rows < n) & (cols < m)
    pred_pairs, targ_pairs = pred_idx[rows[matched]], targ_idx[cols[matched]]
    pred_lonely = np.setdiff1d(np.arange(len(pred)), pred_pairs, assume_unique=True)
    targ_lonely = np.setdiff1d(np.arange(len(targ)), targ_pairs, assume_unique=True)
    to_index = lambda a: torch.as_tensor(a, dtype=torch.long, device=prediction.device)  # noqa: E731
    pairs = (prediction[to_index(pred_pairs)] - target[to_index(targ_pairs)]).pow(2).sum()
    lonely_pred = prediction[to_index(pred_lonely)]
    lonely_target = target[to_index(targ_lonely)]
    to_diagonal = (lonely_pred[:, 0] - lonely_pred[:, 1]).pow(2).sum() + (lonely_target[:, 0] - lonely_target[:, 1]).pow(
        2
    ).sum()
    return pairs + to_diagonal / 2


def _points(diagram: PersistenceDiagram, dim: int) -> torch.Tensor:
    keep = diagram.dims == dim
    return torch.stack([diagram.births[keep], diagram.deaths[keep]], 1)


def matching_loss_from_diagrams(prediction: PersistenceDiagram, target: PersistenceDiagram) -> torch.Tensor:
    """Hu et al.'s topological loss: :func:`wasserstein2_squared` summed over homology dimensions.

    Essential bars follow the package convention (death 0), so they are ordinary points
    ``(birth, 0)`` and are matched like any other point.

    Parameters
    ----------
    prediction, target : PersistenceDiagram
        Diagrams of the predicted and the ground-truth map, over the same homology dimensions.

    Returns
    -------
    torch.Tensor
        A scalar, differentiable with respect to both maps.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.ph import cubical_persistence
    >>> from monai_topo.losses import matching_loss_from_diagrams
    >>> gt = torch.zeros(7, 7)
    >>> gt[1:6, 1:6] = 1.0
    >>> gt[3, 3] = 0.0                        # a ring: points (1, 0) in dims 0 and 1
    >>> pred = gt * 0.8                       # the same ring, less confident
    >>> round(float(matching_loss_from_diagrams(cubical_persistence(pred), cubical_persistence(gt))), 4)
    0.08
    """
    for diagram, name in ((prediction, "prediction"), (target, "target")):
        if not isinstance(diagram, PersistenceDiagram):
            raise TypeError(
                f"{name} must be a PersistenceDiagram (from monai_topo.ph.cubical_persistence), "
                f"got {type(diagram).__name__}."
            )
    if prediction.maxdim != target.maxdim:
        raise ValueError(
            f"diagrams cover different homology dimensions: 0..{prediction.maxdim} and 0..{target.maxdim}."
        )
    total = prediction.births.new_zeros(())
    for dim in range(prediction.maxdim + 1):
        total = total + wasserstein2_squared(_points(prediction, dim), _points(target, dim).to(prediction.births))
    return total


def _check_patch_size(patch_size) -> tuple[int, ...] | None:
    """``None``, or the patch size as a tuple (an int stands for every spatial dimension)."""
    if patch_size is None:
        return None
    sizes = (patch_size,) if isinstance(patch_size, (int, np.integer)) else patch_size
    if (
        isinstance(sizes, (str, bytes))
        or not isinstance(sizes, Sequence)
        or not 1 <= len(sizes) <= 3
        or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes)
    ):
        raise ValueError(f"patch_size must be a positive int or one per spatial dimension, got {patch_size!r}.")
    return tuple(int(s) for s in sizes)


def _patch_shape(sizes: tuple[int, ...], spatial_shape: Sequence[int]) -> tuple[int, ...]:
    if len(sizes) == 1:
        sizes = sizes * len(spatial_shape)
    if len(sizes) != len(spatial_shape):
        raise ValueError(f"patch_size {sizes} does not fit the {len(spatial_shape)}D input of shape {tuple(spatial_shape)}.")
    return tuple(min(s, n) for s, n in zip(sizes, spatial_shape))


def split_into_patches(x: torch.Tensor, patch_size: Sequence[int]) -> torch.Tensor:
    """Tile ``(B, C, *spatial)`` into non-overlapping patches, ``(B, C * P, *patch_size)``.

    Edge patches are padded with zeros: zero-valued cells join the super-level filtration only at
    its end (value 0), so padding leaves the diagram of the partial patch unchanged.
    """
    spatial = x.shape[2:]
    counts = [math.ceil(n / p) for n, p in zip(spatial, patch_size)]
    padding = []
    for n, p, c in zip(reversed(spatial), reversed(patch_size), reversed(counts)):
        padding += [0, c * p - n]
    x = F.pad(x, padding)
    batch, channels = x.shape[:2]
    shape = [batch, channels]
    for c, p in zip(counts, patch_size):
        shape += [c, p]
    ndim = len(patch_size)
    # (B, C, n1, p1, n2, p2[, n3, p3]) -> (B, C, n1, n2[, n3], p1, p2[, p3])
    order = [0, 1, *range(2, 2 + 2 * ndim, 2), *range(3, 3 + 2 * ndim, 2)]
    return x.reshape(shape).permute(order).reshape(batch, channels * math.prod(counts), *patch_size)


def _check_labels(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``target`` if it holds class indices ``0 .. num_classes - 1``; one_hot would truncate 0.5 to 0."""
    values = target if target.is_floating_point() else target.float()
    valid = (values == values.round()) & (values >= 0) & (values < num_classes)  # NaN is not valid
    if not bool(valid.all()):
        raise ValueError(
            f"with to_onehot_y=True, target must hold class labels 0..{num_classes - 1} (whole numbers, one per "
            f"input channel), got {float(values[~valid][0]):g}; round or threshold soft labels first."
        )
    return target


class PersistenceMatchingLoss(TopologicalLoss):
    """Persistence-diagram matching loss (Hu et al., NeurIPS 2019) between a prediction and its ground truth.

    For each item and channel, the diagrams of the prediction and of the target (super-level
    filtrations, all homology dimensions of the image) are matched optimally, unmatched points
    going to the diagonal, and the loss is the squared 2-Wasserstein distance
    (:func:`matching_loss_from_diagrams`) summed over dimensions. Essential bars have death 0,
    so they are ordinary points ``(birth, 0)``. Gradients reach the prediction's critical cells
    only; the target is not differentiated. A constant prediction gives a zero gradient.

    Parameters
    ----------
    patch_size : int or sequence of int, optional
        Compute the loss on non-overlapping tiles of this size (the paper used 65×65) and **sum**
        the tiles of each item and channel, which localises features and keeps diagrams small.
        Edge tiles are smaller (zero padding leaves their diagram unchanged). Default: whole image.
    to_onehot_y : bool
        Convert a ``(B, 1, ...)`` label-index target to one-hot with ``input.shape[1]`` classes; the
        labels must then be whole numbers ``0 .. C - 1``. Ignored, with a warning as in MONAI, for a
        single-channel input (whose target is then read as a mask).
    connectivity, include_background, sigmoid, softmax, other_act, num_workers
        As in :class:`TopologicalPriorLoss`.
    reduction : {"mean", "sum", "none"}
        ``"none"``: shape ``(B, C, 1, 1[, 1])``.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.losses import PersistenceMatchingLoss
    >>> target = torch.zeros(2, 1, 16, 16)
    >>> target[:, :, 4:12, 4:12] = 1
    >>> target[:, :, 7:9, 7:9] = 0            # a ring
    >>> logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    >>> loss = PersistenceMatchingLoss(sigmoid=True)(logits, target)
    >>> loss.backward()
    >>> PersistenceMatchingLoss()(target, target).item()
    0.0
    """

    requires_target = True

    def __init__(
        self,
        patch_size: int | Sequence[int] | None = None,
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
        self.patch_size = _check_patch_size(patch_size)
        self.to_onehot_y = check_bool(to_onehot_y, "to_onehot_y")

    def _target(self, target: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
        if not isinstance(target, torch.Tensor):
            raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}.")
        target = plain_tensor(target).detach()
        if target.is_complex():
            raise TypeError(f"target must hold real numbers, got dtype {target.dtype}.")
        if self.to_onehot_y and input.shape[1] == 1:
            warnings.warn("single channel prediction, `to_onehot_y=True` ignored.", stacklevel=3)
        elif self.to_onehot_y:
            if target.ndim != input.ndim or target.shape[1] != 1:
                raise ValueError(f"to_onehot_y=True needs a (B, 1, ...) label target, got shape {tuple(target.shape)}.")
            target = one_hot(_check_labels(target, input.shape[1]), num_classes=input.shape[1])
        if target.shape != input.shape:
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match input shape {tuple(input.shape)}"
                + (" (set to_onehot_y=True for a label-index target)" if target.shape[1] == 1 else "")
                + "."
            )
        return check_probability_map(target.to(input.dtype), "target")

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Match the diagrams of ``input`` and ``target``.

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
        if self.patch_size is not None:
            patch = _patch_shape(self.patch_size, probs.shape[2:])
            probs, target = split_into_patches(probs, patch), split_into_patches(target, patch)
        # one batch for both, so the prediction's and the target's PH run in parallel
        diagrams = batch_persistence(
            torch.cat([probs, target]), connectivity=self.connectivity, num_workers=self.num_workers
        )
        pred_dgms, target_dgms = diagrams[:batch], diagrams[batch:]
        loss = loss_table(matching_loss_from_diagrams, pred_dgms, target_dgms)
        loss = zero_gradient_where_constant(loss, probs)
        # patches of one channel are consecutive: sum them back into (B, C)
        loss = loss.reshape(batch, channels, -1).sum(-1)
        return self.reduce(loss, input.ndim - 2)
