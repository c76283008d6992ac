"""What the topology metrics share: the ``(B, C, *spatial)`` input contract and MONAI's reductions."""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction, ignore_background
from monai.utils import MetricReduction

from monai_topo.validation import check_bool, native_array

REDUCTIONS = tuple(r.value for r in MetricReduction)


def check_reduction(reduction, name: str = "reduction") -> str:
    """The value of a MONAI metric reduction, or a ``ValueError`` that lists them (at construction,
    rather than at the first :meth:`~ReducedMetric.aggregate`)."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"{name} must be one of {REDUCTIONS}, got {reduction!r}.")
    return MetricReduction(reduction).value


def _as_tensor(x, name: str) -> torch.Tensor:
    """A tensor or a numpy array (any byte order or strides) as a tensor; anything else is a ``TypeError``."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(native_array(x, name))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}.")
    return x


def _as_batch_tensor(x, name: str) -> torch.Tensor:
    x = _as_tensor(x, name)
    if x.ndim not in (4, 5):
        raise ValueError(
            f"{name} must have shape (B, C, H, W) or (B, C, D, H, W), got shape {tuple(x.shape)}."
        )
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}).")
    if x.is_complex():
        raise TypeError(f"{name} must be a real or boolean tensor, got dtype {x.dtype}.")
    return x


def _as_metric_input(x, name: str):
    """A batch tensor, or a list of channel-first items, with numpy arrays converted to tensors."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError(f"{name} is an empty list; give at least one channel-first item.")
        return [_as_tensor(item, f"{name}[{i}]") for i, item in enumerate(x)]
    return _as_tensor(x, name)


def check_binary(x: torch.Tensor, name: str) -> torch.Tensor:
    """Return ``x`` as a bool tensor, or raise ``ValueError`` if it holds values other than 0 and 1."""
    if x.dtype != torch.bool and not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(
            f"{name} must be binarised (values 0 and 1 only); threshold probabilities first, "
            "e.g. monai.transforms.AsDiscrete(threshold=0.5)."
        )
    return x.bool()


def segmentation_pair(
    y_pred, y, include_background: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Check the ``(B, C, *spatial)`` layout of ``y_pred`` (and ``y`` when given) and drop channel 0
    unless ``include_background`` (a single channel is always kept, as in MONAI)."""
    y_pred = _as_batch_tensor(y_pred, "y_pred")
    if y is not None:
        y = _as_batch_tensor(y, "y")
        if y.shape != y_pred.shape:
            raise ValueError(
                f"y_pred and y must have the same shape, got {tuple(y_pred.shape)} and {tuple(y.shape)}."
            )
    if not check_bool(include_background, "include_background"):
        y_pred, y = ignore_background(y_pred=y_pred, y=y)
    return y_pred, y


class ReducedMetric(CumulativeIterationMetric):
    """A cumulative metric with one value per item and channel, NaN where an entry is excluded,
    aggregated over the not-NaN values exactly like MONAI's metrics.

    Parameters
    ----------
    include_background : bool
        Whether to score channel 0 of a multi-channel input.
    reduction : str or MetricReduction
        ``"mean"``, ``"sum"``, ``"mean_batch"``, ``"sum_batch"``, ``"mean_channel"``, ``"sum_channel"``
        or ``"none"``; applied to the not-NaN values only.
    get_not_nans : bool
        Whether :meth:`aggregate` also returns the count of not-NaN values.
    """

    def __init__(
        self,
        include_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__()
        self.include_background = check_bool(include_background, "include_background")
        self.reduction = check_reduction(reduction)
        self.get_not_nans = check_bool(get_not_nans, "get_not_nans")

    def __call__(self, y_pred, y=None, **kwargs):  # type: ignore[override]
        """Score one iteration (a ``(B, C, *spatial)`` batch or a list of channel-first items) and
        buffer it; numpy arrays are accepted, and ``y`` must come in the same form as ``y_pred``."""
        y_pred = _as_metric_input(y_pred, "y_pred")
        if y is not None:
            y = _as_metric_input(y, "y")
            if isinstance(y_pred, list) != isinstance(y, list):
                raise ValueError("y_pred and y must both be batch tensors or both be lists of items.")
            if isinstance(y, list) and len(y) != len(y_pred):
                raise ValueError(f"y_pred and y must hold as many items, got {len(y_pred)} and {len(y)}.")
        return super().__call__(y_pred, y, **kwargs)

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the buffered ``(B, C)`` values over their not-NaN entries.

        Parameters
        ----------
        reduction : str or MetricReduction, optional
            Overrides the reduction given at construction.
        """
        reduction = self.reduction if reduction is None else check_reduction(reduction)
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(
                f"{type(self).__name__} has nothing to aggregate: call it on at least one batch first "
                "(aggregate() after reset() needs new batches too)."
            )
        f, not_nans = do_metric_reduction(data, reduction)
        return (f, not_nans) if self.get_not_nans else f
