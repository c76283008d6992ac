"""Betti number error: how far the topology of a binary segmentation is from the truth or a prior."""

from __future__ import annotations

import numpy as np
import torch
from monai.utils import MetricReduction

from monai_topo.priors import batch_prior_items, parse_batch_priors, parse_prior
from monai_topo.metrics.base import ReducedMetric, check_binary, segmentation_pair
from monai_topo.ph import DEFAULT_CONNECTIVITY, betti_numbers, check_connectivity
from monai_topo.validation import check_bool


def _betti_table(masks: torch.Tensor, connectivity: str) -> np.ndarray:
    """Betti numbers of every item and channel of a bool ``(B, C, *spatial)`` tensor, ``(B, C, d)``."""
    masks = masks.cpu().numpy()
    return np.array(
        [[betti_numbers(channel, connectivity) for channel in item] for item in masks], dtype=float
    ).reshape(*masks.shape[:2], masks.ndim - 2)


def _is_unknown(item) -> bool:
    """``None``, or numbers that are all NaN: an item whose topology is not known."""
    if item is None:
        return True
    try:
        values = np.asarray(item, dtype=float)
    except (TypeError, ValueError):  # ranges such as (1, (0, 2)) are ragged: a real prior
        return False
    return values.size > 0 and bool(np.isnan(values).all())


def _prior_bounds(prior, batch_size: int, spatial_ndim: int) -> np.ndarray:
    """Per-item ``[min, max]`` Betti bounds, shape ``(B, spatial_ndim, 2)``: ``[0, inf]`` in dimensions a
    prior leaves free, NaN for unknown items."""
    items = batch_prior_items(prior, batch_size)
    unknown = np.array([_is_unknown(item) for item in items], dtype=bool)
    # Unknown items stand in as the free prior β0 in [0, ∞) so that the shared parser checks the rest.
    items = [[(0, None)] if is_unknown else item for item, is_unknown in zip(items, unknown)]
    bounds = np.tile([0.0, np.inf], (batch_size, spatial_ndim, 1))
    for b, parsed in enumerate(parse_batch_priors(items, batch_size, spatial_ndim)):
        constrained = len(parsed)
        bounds[b, :constrained, 0] = parsed.min_counts
        bounds[b, :constrained, 1] = [np.inf if high is None else high for high in parsed.max_counts]
    bounds[unknown] = np.nan
    return bounds


def compute_betti_error(
    y_pred,
    y=None,
    prior=None,
    include_background: bool = False,
    connectivity: str = DEFAULT_CONNECTIVITY,
    ignore_empty: bool = False,
) -> torch.Tensor:
    """Betti number errors of binary segmentations against a ground truth or a Betti prior.

    For each item and channel and each homology dimension k (0 components, 1 loops/tunnels,
    2 cavities), the error is ``|β_k(y_pred) − β_k(y)|``; against a prior it is the distance from
    ``β_k(y_pred)`` to the prior's range ``[min_k, max_k]`` (``|β_k − β*_k|`` for an exact count).
    The last column is their sum over k, the Betti number error of Hu et al. (NeurIPS 2019).

    Parameters
    ----------
    y_pred : torch.Tensor or numpy.ndarray, shape (B, C, H, W) or (B, C, D, H, W)
        Binarised prediction (bool, or numbers that are all 0 or 1).
    y : torch.Tensor or numpy.ndarray, optional
        Binarised ground truth of the same shape. Give either ``y`` or ``prior``.
    prior : sequence or array, optional
        One Betti prior per item, as :func:`monai_topo.priors.batch_prior_items` reads them: a list
        of ``B`` tuples ``(β0, β1[, β2])`` whose entries may be ``(min, max)`` ranges (``max`` ``None``
        for no limit), a tensor of shape ``(B, d)`` or ``(B, d, 2)``, or ``batch["prior"]`` as a MONAI
        ``DataLoader`` collates per-item priors. A prior with fewer entries
        than the image has homology dimensions leaves the rest free (error 0 there). An item whose
        prior is ``None`` (or a row of NaN) has unknown topology and is scored NaN. Each prior
        applies to every scored channel of its item.
    include_background : bool
        Whether to score channel 0 of a multi-channel input (a single channel is always scored).
    connectivity : {"full", "face"}
        Foreground adjacency, as in :func:`monai_topo.ph.betti_numbers`: ``"full"`` 8 (2D) / 26 (3D),
        ``"face"`` 4 / 6.
    ignore_empty : bool
        With ``y``: score NaN where the ground truth channel has no foreground, so that, as with
        ``monai.metrics.DiceMetric(ignore_empty=True)``, absent structures are left out of the means.

    Returns
    -------
    torch.Tensor of float32, shape (B, C', d + 1)
        ``[..., k]`` the error in dimension k for k < d, ``[..., d]`` the total; ``C'`` is the number
        of scored channels. NaN for items excluded by ``ignore_empty`` or an unknown prior.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.metrics import compute_betti_error
    >>> ring = torch.zeros(1, 1, 7, 7)
    >>> ring[..., 1:6, 1:6] = 1
    >>> ring[..., 3, 3] = 0
    >>> broken = ring.clone()
    >>> broken[..., 3, 1:3] = 0  # a gap: the loop opens
    >>> compute_betti_error(broken, ring)
    tensor([[[0., 1., 1.]]])
    >>> compute_betti_error(broken, prior=[(1, 1)])
    tensor([[[0., 1., 1.]]])
    """
    if (y is None) == (prior is None):
        raise ValueError(
            "give either y (a binarised ground truth) or prior (Betti numbers per item), "
            f"got {'both' if y is not None else 'neither'}."
        )
    connectivity = check_connectivity(connectivity)
    ignore_empty = check_bool(ignore_empty, "ignore_empty")
    y_pred, y = segmentation_pair(y_pred, y, include_background)
    betti_pred = _betti_table(check_binary(y_pred, "y_pred"), connectivity)
    if y is not None:
        truth = check_binary(y, "y")
        low = high = _betti_table(truth, connectivity)
        if ignore_empty:
            low = np.where(truth.flatten(2).any(-1).cpu().numpy()[..., None], low, np.nan)
    else:
        if ignore_empty:
            raise ValueError("ignore_empty needs a ground truth y; it has no meaning against a prior.")
        bounds = _prior_bounds(prior, y_pred.shape[0], y_pred.ndim - 2)[:, None]
        low, high = bounds[..., 0], bounds[..., 1]
    # NaN bounds propagate, so excluded items stay NaN in every column.
    errors = np.maximum(low - betti_pred, 0) + np.maximum(betti_pred - high, 0)
    table = np.concatenate([errors, errors.sum(-1, keepdims=True)], axis=-1)
    return torch.as_tensor(table, dtype=torch.float32, device=y_pred.device)


class BettiComparisonMetric(ReducedMetric):
    """Base of the metrics that compare Betti numbers with a ground truth or a prior.

    It holds the options of :func:`compute_betti_error`, a prior fixed at construction, and the
    per-item prior given at call time; subclasses turn the ``(B, C, d + 1)`` errors into one
    value per item and channel in :meth:`_score`.
    """

    def __init__(
        self,
        include_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
        connectivity: str = DEFAULT_CONNECTIVITY,
        prior=None,
        ignore_empty: bool = False,
    ) -> None:
        super().__init__(include_background, reduction, get_not_nans)
        self.connectivity = check_connectivity(connectivity)
        ignore_empty = check_bool(ignore_empty, "ignore_empty")
        if prior is not None:
            parse_prior(prior)
            if ignore_empty:
                raise ValueError("ignore_empty needs a ground truth y; it has no meaning with a prior.")
        self.prior = prior
        self.ignore_empty = ignore_empty

    def __call__(self, y_pred, y=None, prior=None):  # type: ignore[override]
        """Score one iteration and add it to the buffer.

        Parameters
        ----------
        y_pred : torch.Tensor or list of torch.Tensor
            Binarised batch ``(B, C, *spatial)`` or list of channel-first items.
        y : torch.Tensor or list of torch.Tensor, optional
            Binarised ground truth in the same form; leave out to score against a prior.
        prior : sequence or array, optional
            One prior per item (see :func:`compute_betti_error`); overrides the prior given at
            construction.

        Returns
        -------
        torch.Tensor, shape (B, C)
        """
        return super().__call__(y_pred, y, prior=prior)

    def _compute_list(self, y_pred, y=None, prior=None):  # type: ignore[override]
        if prior is None:
            return super()._compute_list(y_pred, y)
        items = batch_prior_items(prior, len(y_pred))
        truths = [None] * len(y_pred) if y is None else [t.detach().unsqueeze(0) for t in y]
        return torch.cat(
            [
                self._compute_tensor(p.detach().unsqueeze(0), t, prior=[item])
                for p, t, item in zip(y_pred, truths, items)
            ]
        )

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None, prior=None
    ) -> torch.Tensor:
        if prior is None and self.prior is not None:
            prior = [self.prior] * len(y_pred)
        errors = compute_betti_error(
            y_pred, y, prior, self.include_background, self.connectivity, self.ignore_empty
        )
        return self._score(errors)

    def _score(self, errors: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"Subclass {type(self).__name__} must implement _score.")


class BettiErrorMetric(BettiComparisonMetric):
    """Betti number error of binarised segmentations, accumulated over iterations.

    Scores every item and channel with :func:`compute_betti_error` against the ground truth ``y``
    or, where no ground truth exists, against a Betti prior, and reduces the scores like MONAI's
    metrics (NaN entries excluded).

    Parameters
    ----------
    include_background : bool
        Whether to score channel 0 of a multi-channel input (a single channel is always scored).
    reduction : str or MetricReduction
        ``"mean"`` (default), ``"sum"``, ``"mean_batch"``, ``"sum_batch"``, ``"mean_channel"``,
        ``"sum_channel"`` or ``"none"``.
    get_not_nans : bool
        Whether :meth:`aggregate` returns ``(value, not_nans)``.
    connectivity : {"full", "face"}
        Foreground adjacency; default ``"full"`` (8-connected in 2D, 26 in 3D).
    prior : sequence, optional
        One Betti prior for every item, e.g. ``(1, 1)`` for a ring or ``(1, (0, 2))`` for one
        component with at most two holes; then call the metric without ``y``. A per-item
        ``prior=`` given at call time takes precedence.
    homology_dim : int, optional
        Score only the error in this homology dimension (0, 1 or 2); default ``None``, the total
        over all dimensions.
    ignore_empty : bool
        With a ground truth: score NaN where its channel is empty (see :func:`compute_betti_error`).

    Examples
    --------
    >>> import torch
    >>> from monai_topo.metrics import BettiErrorMetric
    >>> ring = torch.zeros(2, 1, 7, 7)
    >>> ring[..., 1:6, 1:6] = 1
    >>> ring[..., 3, 3] = 0
    >>> pred = ring.clone()
    >>> pred[1, 0, 3, 1:3] = 0  # the second ring is broken
    >>> metric = BettiErrorMetric(reduction="none")
    >>> metric(pred, ring)
    tensor([[0.],
            [1.]])
    >>> metric(pred, prior=[(1, 0), (1, 0)])  # one prior per item: two discs wanted
    tensor([[1.],
            [0.]])
    >>> BettiErrorMetric(prior=(1, 1))(pred).flatten()
    tensor([0., 1.])
    >>> metric.aggregate(reduction="mean")
    tensor([0.5000])
    """

    def __init__(
        self,
        include_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
        connectivity: str = DEFAULT_CONNECTIVITY,
        prior=None,
        homology_dim: int | None = None,
        ignore_empty: bool = False,
    ) -> None:
        super().__init__(include_background, reduction, get_not_nans, connectivity, prior, ignore_empty)
        if homology_dim is not None and (
            isinstance(homology_dim, (bool, np.bool_))
            or not isinstance(homology_dim, (int, np.integer))
            or not 0 <= homology_dim <= 2
        ):
            raise ValueError(f"homology_dim must be None (the total) or 0, 1 or 2, got {homology_dim!r}.")
        self.homology_dim = None if homology_dim is None else int(homology_dim)

    def _score(self, errors: torch.Tensor) -> torch.Tensor:
        if self.homology_dim is None:
            return errors[..., -1]
        if self.homology_dim >= errors.shape[-1] - 1:
            raise ValueError(
                f"homology_dim={self.homology_dim} does not exist for {errors.shape[-1] - 1}D images."
            )
        return errors[..., self.homology_dim]
