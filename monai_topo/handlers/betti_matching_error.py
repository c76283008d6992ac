"""Ignite handler logging the Betti matching error."""

from __future__ import annotations

from collections.abc import Callable

from monai.handlers.ignite_metric import IgniteMetricHandler
from monai.utils import MetricReduction

from monai_topo.metrics import BettiMatchingErrorMetric
from monai_topo.ph import DEFAULT_CONNECTIVITY


class BettiMatchingError(IgniteMetricHandler):
    """Ignite handler for :class:`monai_topo.metrics.BettiMatchingErrorMetric`: mean Betti matching
    error over items, channels and iterations (lower is better).

    Parameters
    ----------
    include_background : bool
        Whether to score channel 0 of a multi-channel input (a single channel is always scored).
    reduction : str or MetricReduction
        As in MONAI's handlers; default ``"mean"``.
    connectivity : {"full", "face"}
        Foreground adjacency; default ``"full"``.
    homology_dim : int, optional
        Log only the error in this homology dimension; default the total.
    output_transform : callable
        Extracts ``(y_pred, y)`` from ``engine.state.output``, e.g. ``from_engine(["pred", "label"])``.
    save_details : bool
        Whether to save the per-item scores in ``engine.state.metric_details``.

    Examples
    --------
    >>> import torch
    >>> from ignite.engine import Engine
    >>> from monai_topo.handlers import BettiMatchingError
    >>> ring = torch.zeros(1, 1, 9, 9)
    >>> ring[..., 1:8, 1:7] = 1
    >>> ring[..., 3:6, 2:5] = 0
    >>> disc = (ring > 0).float()
    >>> disc[..., 3:6, 2:5] = 1
    >>> engine = Engine(lambda engine, batch: (batch, ring))
    >>> BettiMatchingError().attach(engine, "bm_error")
    >>> engine.run([ring, disc]).metrics["bm_error"]  # (0 + 1) / 2
    0.5
    """

    def __init__(
        self,
        include_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        connectivity: str = DEFAULT_CONNECTIVITY,
        homology_dim: int | None = None,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = BettiMatchingErrorMetric(
            include_background=include_background, reduction=reduction, connectivity=connectivity,
            homology_dim=homology_dim,
        )
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
