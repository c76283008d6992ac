"""Ignite handler logging the Betti number error, against a ground truth or a Betti prior."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ignite.metrics.metric import reinit__is_reduced
from monai.handlers.ignite_metric import IgniteMetricHandler
from monai.utils import MetricReduction

from monai_topo.metrics import BettiErrorMetric
from monai_topo.metrics.betti_error import BettiComparisonMetric
from monai_topo.ph import DEFAULT_CONNECTIVITY


class BettiMetricHandler(IgniteMetricHandler):
    """Ignite handler for a metric comparing Betti numbers, with priors fixed or read per item.

    Without a prior it scores the ``(y_pred, y)`` pair from ``output_transform`` like MONAI's
    handlers. With a prior (fixed in the metric, or per item from ``engine.state.batch[prior_key]``)
    the ``y`` of the pair is not used, so ``from_engine(["pred", "label"])`` works either way and
    the label may be ``None``.

    Parameters
    ----------
    metric_fn : BettiComparisonMetric
        The metric to accumulate.
    prior_key : str, optional
        Key of the per-item prior in the batch dictionary (e.g. ``"prior"``), read from
        ``engine.state.batch`` after decollation. Store each item's prior as an array or tensor of
        shape ``(d,)`` or ``(d, 2)``, so that collation keeps one row per item.
        It takes precedence over a prior fixed in the metric.
    output_transform : callable
        Extracts ``(y_pred, y)`` from ``engine.state.output``.
    save_details : bool
        Whether to save the per-item scores in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        metric_fn: BettiComparisonMetric,
        prior_key: str | None = None,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
        self.prior_key = prior_key

    def _batch_priors(self):
        batch = self._engine.state.batch if self._engine is not None else None
        items = batch if isinstance(batch, list) else [batch]
        if not all(isinstance(item, dict) and self.prior_key in item for item in items):
            raise ValueError(
                f"prior_key={self.prior_key!r} not found in engine.state.batch; put each item's Betti "
                "prior in its data dictionary under that key."
            )
        return batch[self.prior_key] if isinstance(batch, dict) else [item[self.prior_key] for item in batch]

    def iteration_completed(self, engine) -> None:
        """Score the iteration's output; with ``prior_key`` all items at once, so that the priors read
        from the batch line up with the predictions (ignite would otherwise update item by item)."""
        if self.prior_key is None:
            super().iteration_completed(engine)
        else:
            self.update(self._output_transform(engine.state.output))

    @reinit__is_reduced
    def update(self, output: Sequence) -> None:
        """Score one iteration.

        Parameters
        ----------
        output : sequence
            ``(y_pred, y)``; ``y`` is not used (and may be ``None``) when a prior is set.
        """
        # A bare tensor has a len() too: a batch of two would be unpacked into two items.
        if not isinstance(output, (list, tuple)) or len(output) != 2:
            got = f"{len(output)} values" if isinstance(output, (list, tuple)) else type(output).__name__
            raise ValueError(
                f"output must be a (y_pred, y) pair, got {got}; set output_transform, "
                'e.g. monai.handlers.from_engine(["pred", "label"]).'
            )
        y_pred, y = output
        if self.prior_key is not None:
            self.metric_fn(y_pred, prior=self._batch_priors())
        elif self.metric_fn.prior is not None:
            self.metric_fn(y_pred)
        else:
            self.metric_fn(y_pred, y)


class BettiError(BettiMetricHandler):
    """Ignite handler for :class:`monai_topo.metrics.BettiErrorMetric`: mean Betti number error over
    items, channels and iterations, usable as a MONAI workflow's key metric (lower is better,
    so pair it with ``metric_cmp_fn=lambda current, best: current < best``).

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
    homology_dim : int, optional
        Log only the error in this homology dimension; default the total.
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
    >>> from monai_topo.handlers import BettiError
    >>> ring = torch.zeros(1, 1, 7, 7)
    >>> ring[..., 1:6, 1:6] = 1
    >>> ring[..., 3, 3] = 0
    >>> engine = Engine(lambda engine, batch: (batch, None))
    >>> BettiError(prior=(1, 0)).attach(engine, "betti_error")
    >>> engine.run([ring, ring]).metrics["betti_error"]
    1.0
    """

    def __init__(
        self,
        include_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        connectivity: str = DEFAULT_CONNECTIVITY,
        prior=None,
        prior_key: str | None = None,
        homology_dim: int | None = None,
        ignore_empty: bool = False,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = BettiErrorMetric(
            include_background=include_background,
            reduction=reduction,
            connectivity=connectivity,
            prior=prior,
            homology_dim=homology_dim,
            ignore_empty=ignore_empty,
        )
        super().__init__(metric_fn, prior_key, output_transform, save_details)
