"""Ignite handler logging the variation of information."""

from __future__ import annotations

from collections.abc import Callable

from monai.handlers.ignite_metric import IgniteMetricHandler
from monai.utils import MetricReduction

from monai_topo.metrics import VariationOfInformationMetric


class VariationOfInformation(IgniteMetricHandler):
    """Ignite handler for :class:`monai_topo.metrics.VariationOfInformationMetric`: mean variation of
    information (nats) over items, channels and iterations (lower is better).

    Parameters
    ----------
    include_background : bool
        Whether to score channel 0 of a multi-channel input (a single channel, such as a label map,
        is always scored).
    reduction : str or MetricReduction
        As in MONAI's handlers; default ``"mean"``.
    output_transform : callable
        Extracts ``(y_pred, y)`` from ``engine.state.output``, e.g. ``from_engine(["pred", "label"])``.
    save_details : bool
        Whether to save the per-item scores in ``engine.state.metric_details``.

    Examples
    --------
    >>> import torch
    >>> from ignite.engine import Engine
    >>> from monai_topo.handlers import VariationOfInformation
    >>> truth = torch.tensor([[[[0, 0, 1, 1]]]])
    >>> engine = Engine(lambda engine, batch: (batch, truth))
    >>> VariationOfInformation().attach(engine, "vi")
    >>> round(engine.run([truth, torch.zeros_like(truth)]).metrics["vi"], 4)  # (0 + log 2) / 2
    0.3466
    """

    def __init__(
        self,
        include_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = VariationOfInformationMetric(include_background=include_background, reduction=reduction)
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
