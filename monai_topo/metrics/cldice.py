"""clDice: overlap of the skeletons of two binary segmentations (Shit et al., CVPR 2021)."""

from __future__ import annotations

import numpy as np
import torch
from monai.utils import MetricReduction
from skimage.morphology import skeletonize

from monai_topo.metrics.base import ReducedMetric, check_binary, segmentation_pair


def _cldice(pred: np.ndarray, truth: np.ndarray) -> float:
    skeleton_pred, skeleton_truth = skeletonize(pred), skeletonize(truth)
    # topology precision: the share of the predicted skeleton inside the true mask; sensitivity: vice versa
    precision = (skeleton_pred & truth).sum() / skeleton_pred.sum() if skeleton_pred.any() else np.nan
    sensitivity = (skeleton_truth & pred).sum() / skeleton_truth.sum() if skeleton_truth.any() else np.nan
    if np.isnan(precision) or np.isnan(sensitivity):
        return 1.0 if not (pred.any() or truth.any()) else 0.0
    return 0.0 if precision + sensitivity == 0 else float(2 * precision * sensitivity / (precision + sensitivity))


def compute_cldice(y_pred, y, include_background: bool = False) -> torch.Tensor:
    """clDice of binary segmentations, per item and channel (2D or 3D).

    With ``S_P``, ``S_G`` the skeletons (:func:`skimage.morphology.skeletonize`) of the prediction
    ``V_P`` and the truth ``V_G``: topology precision ``Tprec = |S_P ∩ V_G| / |S_P|``, topology
    sensitivity ``Tsens = |S_G ∩ V_P| / |S_G|``, and ``clDice = 2 Tprec Tsens / (Tprec + Tsens)``.
    Two empty masks score 1; an empty skeleton against a non-empty mask scores 0.

    Parameters
    ----------
    y_pred, y : torch.Tensor or numpy.ndarray, shape (B, C, H, W) or (B, C, D, H, W)
        Binarised prediction and ground truth.
    include_background : bool
        Whether to score channel 0 of a multi-channel input (a single channel is always scored).

    Returns
    -------
    torch.Tensor of float32, shape (B, C')

    Examples
    --------
    >>> import torch
    >>> vessel = torch.zeros(1, 1, 9, 9)
    >>> vessel[..., 3:6, :] = 1
    >>> compute_cldice(vessel, vessel)
    tensor([[1.]])
    >>> cut = vessel.clone()
    >>> cut[..., :, 4] = 0                               # the vessel is cut in two
    >>> round(compute_cldice(cut, vessel).item(), 4)     # Tprec 6/6, Tsens 7/8 of the centre line
    0.9333
    """
    y_pred, y = segmentation_pair(y_pred, y, include_background)
    if y is None:
        raise ValueError("y (the binarised ground truth) is required for clDice.")
    pred, truth = check_binary(y_pred, "y_pred").cpu().numpy(), check_binary(y, "y").cpu().numpy()
    table = [[_cldice(p, t) for p, t in zip(pi, ti)] for pi, ti in zip(pred, truth)]
    return torch.as_tensor(table, dtype=torch.float32, device=y_pred.device)


class ClDiceMetric(ReducedMetric):
    """clDice of binarised segmentations, accumulated over iterations (higher is better).

    Parameters
    ----------
    include_background : bool
        Whether to score channel 0 of a multi-channel input (a single channel is always scored).
    reduction : str or MetricReduction
        As MONAI's metrics; default ``"mean"``.
    get_not_nans : bool
        Whether :meth:`aggregate` returns ``(value, not_nans)``.

    See Also
    --------
    compute_cldice : the definition.

    Examples
    --------
    >>> import torch
    >>> vessel = torch.zeros(2, 1, 9, 9)
    >>> vessel[..., 3:6, :] = 1
    >>> metric = ClDiceMetric()
    >>> metric(vessel, vessel)
    tensor([[1.],
            [1.]])
    >>> metric.aggregate()
    tensor([1.])
    """

    def __init__(
        self,
        include_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(include_background, reduction, get_not_nans)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        return compute_cldice(y_pred, y, self.include_background)
