"""Semi-supervised training with a topological prior on unlabelled images (Clough et al., TPAMI 2020, Eq. 6)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from monai.data import MetaTensor
from monai.engines import SupervisedTrainer
from torch.optim.optimizer import Optimizer
from torch.utils.data import DataLoader

from monai_topo.priors import batch_prior_items

__all__ = ["SemiSupervisedTrainer"]

SUP_LOSS = "sup_loss"
TOPO_LOSS = "topo_loss"


class SemiSupervisedTrainer(SupervisedTrainer):
    """Supervised training plus a topological loss on unlabelled batches (Eq. 6 of Clough et al.).

    Each iteration takes a labelled batch from ``train_data_loader`` (loss ``loss_function``, e.g.
    Dice) and, from epoch ``topo_start_epoch`` on, an unlabelled batch from ``unlabelled_data_loader``
    (cycled endlessly) scored by ``topo_loss_function`` without target; one optimiser step on

        loss = loss_function(f(X_labelled), Y) + lambda_topo * topo_loss_function(f(X_unlabelled))

    So one config runs "supervised training, then the semi-supervised phase". Everything else (AMP,
    gradient accumulation, ``prepare_batch``, ``inferer``, events, handlers, metrics) is
    :class:`monai.engines.SupervisedTrainer`'s: the combined loss is computed inside its iteration,
    where the supervised loss would be. ``engine.state.output`` holds ``"loss"`` (the total),
    ``"sup_loss"`` and ``"topo_loss"`` (0 before ``topo_start_epoch``), e.g. for
    ``StatsHandler(output_transform=lambda x: {k: x[0][k] for k in ("loss", "sup_loss", "topo_loss")})``.

    Parameters
    ----------
    device, max_epochs, train_data_loader, network, optimizer
        As in :class:`monai.engines.SupervisedTrainer`; an epoch is one pass over the labelled data.
    loss_function : callable
        Supervised loss ``loss_function(pred, label)`` on the labelled batch, e.g. ``DiceLoss``
        (averaged if it returns more than a scalar). Kept as ``supervised_loss_function``; the
        engine's ``loss_function`` attribute is the combined loss.
    unlabelled_data_loader : iterable
        Batches of unlabelled images (dictionaries with ``"image"``, or what ``prepare_batch``
        reads); restarted when exhausted (with ``sampler.set_epoch`` when the sampler has it, e.g.
        ``DistributedSampler``).
    topo_loss_function : callable
        ``topo_loss_function(pred)`` or, when the unlabelled batch carries priors under
        ``prior_key``, ``topo_loss_function(pred, prior=priors)`` with ``priors`` a list of one
        prior per item, undone from the ``DataLoader``'s collation by
        :func:`monai_topo.priors.batch_prior_items`; e.g. :class:`monai_topo.losses.TopologicalPriorLoss`.
    lambda_topo : float
        Weight λ of the topological term (0.01 in the paper). With 0 the term is computed and
        logged but does not train.
    topo_start_epoch : int
        First epoch (1-based, as ``engine.state.epoch``) with the topological term; the epochs
        before it are supervised only. 1 (default): semi-supervised from the start.
    prior_key : str or None
        Key of per-item priors in the unlabelled batch dictionaries; None to never pass priors.
    **kwargs
        Any other argument of :class:`monai.engines.SupervisedTrainer` (``epoch_length``,
        ``inferer``, ``amp``, ``train_handlers``, ``key_train_metric``, ...).

    Examples
    --------
    >>> import torch
    >>> from monai.losses import DiceLoss
    >>> from monai_topo.engines import SemiSupervisedTrainer
    >>> labelled = [{"image": torch.rand(2, 1, 8, 8), "label": torch.ones(2, 1, 8, 8)}]
    >>> unlabelled = [{"image": torch.rand(2, 1, 8, 8)}]
    >>> net = torch.nn.Conv2d(1, 1, 3, padding=1)
    >>> trainer = SemiSupervisedTrainer(
    ...     device="cpu", max_epochs=2, train_data_loader=labelled, network=net,
    ...     optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=DiceLoss(sigmoid=True),
    ...     unlabelled_data_loader=unlabelled, topo_loss_function=lambda pred: pred.sigmoid().mean(),
    ...     lambda_topo=0.5, topo_start_epoch=2)
    >>> trainer.run()
    >>> sorted(str(key) for key in trainer.state.output[0])
    ['image', 'label', 'loss', 'pred', 'sup_loss', 'topo_loss']
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        network: torch.nn.Module,
        optimizer: Optimizer,
        loss_function: Callable,
        unlabelled_data_loader: Iterable | DataLoader,
        topo_loss_function: Callable,
        lambda_topo: float = 0.01,
        topo_start_epoch: int = 1,
        prior_key: str | None = "prior",
        **kwargs,
    ) -> None:
        if not isinstance(lambda_topo, (int, float)) or isinstance(lambda_topo, bool) or not (
            math.isfinite(lambda_topo) and lambda_topo >= 0
        ):
            raise ValueError(f"lambda_topo must be a finite number >= 0, got lambda_topo={lambda_topo!r}.")
        if isinstance(topo_start_epoch, bool) or not isinstance(topo_start_epoch, int) or topo_start_epoch < 1:
            raise ValueError(
                f"topo_start_epoch must be an integer >= 1 (epochs count from 1, as engine.state.epoch), "
                f"got topo_start_epoch={topo_start_epoch!r}."
            )
        if not isinstance(unlabelled_data_loader, Iterable):
            raise TypeError(f"unlabelled_data_loader must be iterable, got {type(unlabelled_data_loader).__name__}.")
        for name, value in (("loss_function", loss_function), ("topo_loss_function", topo_loss_function)):
            if not callable(value):
                raise TypeError(f"{name} must be callable, got {type(value).__name__}.")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=self._semi_supervised_loss,
            **kwargs,
        )
        self.supervised_loss_function = loss_function
        self.unlabelled_data_loader = unlabelled_data_loader
        self.topo_loss_function = topo_loss_function
        self.lambda_topo = float(lambda_topo)
        self.topo_start_epoch = topo_start_epoch
        self.prior_key = prior_key
        self._unlabelled_iterator: Iterator | None = None
        self._unlabelled_passes = 0

    @property
    def topo_active(self) -> bool:
        """Whether the current epoch is in the semi-supervised phase."""
        return self.state.epoch >= self.topo_start_epoch

    def _next_unlabelled_batch(self) -> Any:
        for _ in range(2):
            if self._unlabelled_iterator is not None:
                try:
                    return next(self._unlabelled_iterator)
                except StopIteration:
                    pass
            sampler = getattr(self.unlabelled_data_loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):  # reshuffle a DistributedSampler on every pass
                sampler.set_epoch(self._unlabelled_passes)
            self._unlabelled_passes += 1
            self._unlabelled_iterator = iter(self.unlabelled_data_loader)
        raise ValueError("unlabelled_data_loader yields no batches.")

    def _unlabelled_topo_loss(self) -> torch.Tensor:
        """Topological loss of the network's output on the next unlabelled batch."""
        batchdata = self._next_unlabelled_batch()
        batch = self.prepare_batch(batchdata, self.state.device, self.non_blocking, **self.to_kwargs)
        inputs, args, kwargs = (batch[0], (), {}) if len(batch) == 2 else (batch[0], batch[2], batch[3])
        if isinstance(inputs, MetaTensor):
            inputs = inputs.as_tensor()  # the output is only scored: metadata would just slow the loss down
        pred = self.inferer(inputs, self.network, *args, **kwargs)
        if self.prior_key is not None and isinstance(batchdata, dict) and self.prior_key in batchdata:
            priors = batch_prior_items(batchdata[self.prior_key], len(pred))
            return self.topo_loss_function(pred, prior=priors).mean()
        return self.topo_loss_function(pred).mean()

    def _semi_supervised_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Eq. 6 for one iteration; records both terms in ``state.output``."""
        sup_loss = self.supervised_loss_function(pred, target).mean()
        topo_loss = self._unlabelled_topo_loss() if self.topo_active else torch.zeros_like(sup_loss)
        self.state.output[SUP_LOSS] = sup_loss.detach()
        self.state.output[TOPO_LOSS] = topo_loss.detach()
        return sup_loss + self.lambda_topo * topo_loss
