"""Ignite handler logging the proportion of topologically correct segmentations."""

from __future__ import annotations

from collections.abc import Callable

from monai.utils import MetricReduction

from monai_topo.handlers.betti_error import BettiMetricHandler
from monai_topo.metrics import TopologicalCorrectnessMetric
from monai_topo.ph import DEFAULT_CONNECTIVITY


class TopologicalCorrectness(BettiMetricHandler):
    """Ignite handler for :class:`monai_topo.metrics.TopologicalCorrectnessMetric`: the fraction of
    items (and channels) whose Betti numbers match the ground truth or the prior; a natural key
    metric for topology-aware training (higher is better).

    Parameters
    ----------
    include_background : bool
        Whether to score channel 0 of a multi-channel input (a single channel is always scored).
    reduction : str or MetricReduction
        As in MONAI's handlers; default ``"mean"``.
    connectivity : {"full", "face"}
        Foreground adjacency; default ``"full"``.
    prior : sequence, optional
        One Betti prior for every item, e.g. ``(1, 1)``.
    prior_key : str, optional
        Read one prior per item from ``engine.state.batch[prior_key]`` instead.
    ignore_empty : bool
        With a ground truth: leave out items whose truth channel is empty.
    output_transform : callable
        Extracts ``(y_pred, y)`` from ``engine.state.output``, e.g. ``from_engine(["pred", "label"])``.
    save_details : bool
        Whether to save the per-item scores in ``engine.state.metric_details``.

    Examples
    --------
    >>> import torch
    >>> from ignite.engine import Engine
    >>> from monai_topo.handlers import TopologicalCorrectness
    >>> ring = torch.zeros(1, 1, 7, 7)
    >>> ring[..., 1:6, 1:6] = 1
    >>> ring[..., 3, 3] = 0
    >>> disc = torch.zeros(1, 1, 7, 7)
    >>> disc[..., 1:6, 1:6] = 1
    >>> engine = Engine(lambda engine, batch: (batch, None))
    >>> TopologicalCorrectness(prior=(1, 1)).attach(engine, "correct")
    >>> engine.run([ring, disc, ring, ring]).metrics["correct"]
    0.75
    """

    def __init__(
        self,
        include_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        connectivity: str = DEFAULT_CONNECTIVITY,
        prior=None,
        prior_key: str | None = None,
        ignore_empty: bool = False,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = TopologicalCorrectnessMetric(
            include_background=include_background,
            reduction=reduction,
            connectivity=connectivity,
            prior=prior,
            ignore_empty=ignore_empty,
        )
        super().__init__(metric_fn, prior_key, output_transform, save_details)
