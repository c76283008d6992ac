"""Variation of information between two segmentations seen as partitions of the image."""

from __future__ import annotations

import numpy as np
import torch

from monai_topo.metrics.base import ReducedMetric, segmentation_pair


def _check_labels(x: torch.Tensor, name: str) -> np.ndarray:
    x = x.cpu()
    values = (x.float() if x.dtype == torch.bfloat16 else x).numpy()  # numpy has no bfloat16
    if values.dtype != bool and not (np.isfinite(values).all() and (values == np.round(values)).all()):
        raise ValueError(
            f"{name} must hold integer labels (a binarised mask or a label map), not probabilities; "
            "threshold or argmax first, e.g. monai.transforms.AsDiscrete(argmax=True)."
        )
    return values


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _variation_of_information(a: np.ndarray, b: np.ndarray) -> float:
    # Renumber the labels 0..n-1 so that each pair of labels gets one bin of a flat histogram.
    _, codes_a = np.unique(a, return_inverse=True)
    labels_b, codes_b = np.unique(b, return_inverse=True)
    joint = np.bincount(codes_a.ravel() * len(labels_b) + codes_b.ravel())
    # VI = H(X) + H(Y) - 2 I(X;Y) = 2 H(X,Y) - H(X) - H(Y).
    return 2 * _entropy(joint) - _entropy(np.bincount(codes_a.ravel())) - _entropy(np.bincount(codes_b.ravel()))


def compute_variation_of_information(y_pred, y, include_background: bool = False) -> torch.Tensor:
    """Variation of information between predicted and true segmentations, per item and channel.

    Each channel is read as a partition of the pixels/voxels into its labels X (prediction) and
    Y (truth), with probabilities the label frequencies:
    ``VI(X, Y) = H(X) + H(Y) − 2 I(X; Y) = 2 H(X, Y) − H(X) − H(Y)``, in nats (natural logarithm;
    divide by ``log 2`` for bits). It is 0 exactly when the two partitions are the same up to
    renaming the labels, and at most ``log(number of pixels)``.

    - Binary masks ``(B, C, *spatial)``: one VI per channel between the two-label partitions.
    - Label maps ``(B, 1, *spatial)`` of integer labels (e.g. after ``argmax``, or instance labels
      from ``scipy.ndimage.label``): one VI over all labels. Labelling the connected components
      of binary masks first gives the instance VI used for neuron/membrane segmentation.

    Parameters
    ----------
    y_pred : torch.Tensor or numpy.ndarray, shape (B, C, H, W) or (B, C, D, H, W)
        Integer labels (bool, or integer-valued numbers).
    y : torch.Tensor or numpy.ndarray
        Ground truth labels of the same shape.
    include_background : bool
        Whether to score channel 0 of a multi-channel input (a single channel, such as a label map,
        is always scored).

    Returns
    -------
    torch.Tensor of float32, shape (B, C')
        VI in nats per item and scored channel.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.metrics import compute_variation_of_information
    >>> truth = torch.tensor([[[[0, 0, 1, 1]]]])
    >>> compute_variation_of_information(truth, 1 - truth)  # the same partition, relabelled
    tensor([[0.]])
    >>> compute_variation_of_information(torch.zeros_like(truth), truth)  # H(Y) = log 2 lost
    tensor([[0.6931]])
    """
    y_pred, y = segmentation_pair(y_pred, y, include_background)
    if y is None:
        raise ValueError("y (the ground-truth labels) is required for the variation of information.")
    pred, truth = _check_labels(y_pred, "y_pred"), _check_labels(y, "y")
    table = [[_variation_of_information(p, t) for p, t in zip(pi, ti)] for pi, ti in zip(pred, truth)]
    return torch.as_tensor(table, dtype=torch.float32, device=y_pred.device)


class VariationOfInformationMetric(ReducedMetric):
    """Variation of information (in nats) between predicted and true segmentations, accumulated
    over iterations and reduced like MONAI's metrics. Lower is better; 0 for identical partitions.

    Parameters
    ----------
    include_background : bool
        Whether to score channel 0 of a multi-channel input (a single channel is always scored).
    reduction : str or MetricReduction
        ``"mean"`` (default), ``"sum"``, ``"mean_batch"``, ``"sum_batch"``, ``"mean_channel"``,
        ``"sum_channel"`` or ``"none"``.
    get_not_nans : bool
        Whether :meth:`aggregate` returns ``(value, not_nans)``.

    See Also
    --------
    compute_variation_of_information : the definition, and binary masks versus label maps.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.metrics import VariationOfInformationMetric
    >>> labels = torch.tensor([[[[0, 1, 2, 2]]], [[[0, 0, 1, 1]]]])
    >>> metric = VariationOfInformationMetric(reduction="none")
    >>> metric(labels, labels)
    tensor([[0.],
            [0.]])
    """

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        return compute_variation_of_information(y_pred, y, self.include_background)
