"""A pixel-wise loss plus a weighted topological loss, as one MONAI loss."""

from __future__ import annotations

import math

import torch
from torch.nn.modules.loss import _Loss


class TopologicalWrapperLoss(_Loss):
    """``base_loss(input, target) + lambda_topo * topo_loss(input[, target])``.

    The usual way to train with a topological term (Clough et al. Eq. 6, Hu et al.
    ``L_bce + λ L_topo``): e.g. MONAI's ``DiceLoss``/``DiceCELoss`` plus a
    :class:`TopologicalPriorLoss` (which takes no target) or a :class:`PersistenceMatchingLoss`
    (which does). Both losses receive the raw network output, so configure the activation
    (``sigmoid=True``/``softmax=True``) in each. Both should reduce to a scalar (or to
    broadcastable shapes) so that the sum is defined.

    Parameters
    ----------
    base_loss : torch.nn.Module
        Called as ``base_loss(input, target)``.
    topo_loss : torch.nn.Module
        The topological term.
    lambda_topo : float
        Weight of the topological term, >= 0 (Clough et al. used 0.01 in the semi-supervised setting).
    topo_requires_target : bool, optional
        Whether to call ``topo_loss(input, target)`` or ``topo_loss(input)``; default: the
        loss's ``requires_target`` attribute (False for the prior loss, True for the matching loss),
        True if it has none.

    Examples
    --------
    >>> import torch
    >>> from monai.losses import DiceLoss
    >>> from monai_topo.losses import TopologicalPriorLoss, TopologicalWrapperLoss
    >>> loss_fn = TopologicalWrapperLoss(DiceLoss(sigmoid=True), TopologicalPriorLoss((1, 1), sigmoid=True), 0.01)
    >>> logits, label = torch.randn(2, 1, 16, 16), (torch.rand(2, 1, 16, 16) > 0.5).float()
    >>> loss_fn(logits, label).ndim
    0
    """

    def __init__(
        self,
        base_loss: torch.nn.Module,
        topo_loss: torch.nn.Module,
        lambda_topo: float = 0.01,
        topo_requires_target: bool | None = None,
    ) -> None:
        super().__init__()
        for name, loss in (("base_loss", base_loss), ("topo_loss", topo_loss)):
            if not callable(loss):
                raise TypeError(f"{name} must be a callable loss module, got {type(loss).__name__}.")
        if isinstance(lambda_topo, bool) or not isinstance(lambda_topo, (int, float)) or not (
            math.isfinite(lambda_topo) and lambda_topo >= 0
        ):
            raise ValueError(f"lambda_topo must be a finite number >= 0, got {lambda_topo!r}.")
        self.base_loss = base_loss
        self.topo_loss = topo_loss
        self.lambda_topo = float(lambda_topo)
        self.topo_requires_target = (
            getattr(topo_loss, "requires_target", True) if topo_requires_target is None else topo_requires_target
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor, **topo_kwargs) -> torch.Tensor:
        """Return the weighted sum; extra keyword arguments (e.g. per-item ``prior=``) go to ``topo_loss``."""
        if isinstance(target, torch.Tensor) and isinstance(input, torch.Tensor) and (
            target.shape[0] != input.shape[0] or target.shape[2:] != input.shape[2:]
        ):
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match input shape {tuple(input.shape)} "
                "(batch and spatial sizes must agree)."
            )
        base = self.base_loss(input, target)
        topo_args = (input, target) if self.topo_requires_target else (input,)
        return base + self.lambda_topo * self.topo_loss(*topo_args, **topo_kwargs)
