"""Ignite handler logging clDice."""

from __future__ import annotations

from collections.abc import Callable

from monai.handlers.ignite_metric import IgniteMetricHandler
from monai.utils import MetricReduction

from monai_topo.metrics import ClDiceMetric


class ClDice(IgniteMetricHandler):
    """Ignite handler for :class:`monai_topo.metrics.ClDiceMetric`: mean clDice over items, channels
    and iterations (higher is better).

    Parameters
    ----------
    include_background : bool
        Whether to score channel 0 of a multi-channel input (a single channel is always scored).
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
    >>> from monai_topo.handlers import ClDice
    >>> vessel = torch.zeros(1, 1, 9, 9)
    >>> vessel[..., 3:6, :] = 1
    >>> engine = Engine(lambda engine, batch: (batch, vessel))
    >>> ClDice().attach(engine, "cldice")
    >>> engine.run([vessel]).metrics["cldice"]
    1.0
    """

    def __init__(
        self,
        include_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = ClDiceMetric(include_background=include_background, reduction=reduction)
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
