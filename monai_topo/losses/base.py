"""What every topological loss shares: MONAI-style activation, input checks and reduction."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from monai_topo.ph import DEFAULT_CONNECTIVITY, check_connectivity
from monai_topo.validation import check_bool, check_int

# softmax/sum rounding may leave probabilities a hair above 1.
PROBABILITY_TOLERANCE = 1e-5


def plain_tensor(x):
    """``x`` as a plain ``torch.Tensor`` where it is a subclass (a MONAI ``MetaTensor``), still in the
    autograd graph: the losses slice and index the flattened batch, which a collated batch of
    MetaTensors with per-item metadata refuses. Anything else is returned as it is."""
    return x.as_subclass(torch.Tensor) if isinstance(x, torch.Tensor) and type(x) is not torch.Tensor else x


def check_batch(x: torch.Tensor, name: str, finite: bool = True) -> torch.Tensor:
    """Raise unless ``x`` is a non-empty, finite ``(B, C, *spatial)`` tensor with 2 or 3 spatial dimensions
    (``finite=False``: the values are not looked at)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.ndim not in (4, 5):
        raise ValueError(f"{name} must have shape (B, C, H, W) or (B, C, D, H, W), got shape {tuple(x.shape)}.")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}).")
    if finite and not bool(torch.isfinite(x.detach()).all()):
        raise ValueError(f"{name} contains NaN or Inf values.")
    return x


def check_probability_map(x: torch.Tensor, name: str, hint: str = "") -> torch.Tensor:
    """Raise ``ValueError`` unless ``x`` is a finite ``(B, C, *spatial)`` map of values in [0, 1]."""
    low, high = (float(v) for v in torch.aminmax(check_batch(x, name, finite=False).detach()))
    if low >= 0 and high <= 1 + PROBABILITY_TOLERANCE:  # one pass: NaN fails both comparisons
        return x
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name} contains NaN or Inf values.")
    raise ValueError(f"{name} must hold probabilities in [0, 1], got values in [{low:.4g}, {high:.4g}]{hint}.")


def loss_table(score: Callable[..., torch.Tensor], *grids: list[list]) -> torch.Tensor:
    """``(B, C)`` tensor of ``score(grids[0][b][c], grids[1][b][c], ...)``."""
    return torch.stack([torch.stack([score(*cells) for cells in zip(*rows)]) for rows in zip(*grids)])


def zero_gradient_where_constant(loss: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Detach ``loss[b, c]`` where ``maps[b, c]`` is constant.

    A constant map's single bar is born at whichever pixel the engine's tie-breaking picks,
    so its gradient would land on an arbitrary pixel; a zero gradient is the defined result.
    """
    flat = maps.detach().flatten(2)
    constant = flat.amax(-1) == flat.amin(-1)
    return torch.where(constant, loss.detach(), loss)


class TopologicalLoss(_Loss):
    """Base of the topological losses: activation arguments, input validation and reduction as MONAI's.

    Parameters
    ----------
    connectivity : {"full", "face"}
        Foreground adjacency of the persistent homology (see :mod:`monai_topo.ph`).
    include_background : bool
        If False, channel 0 is left out (ignored, with a warning, for single-channel input).
    sigmoid, softmax : bool
        Apply a sigmoid / a softmax over channels to ``input`` first (for logits).
    other_act : callable, optional
        Any other activation applied to ``input`` first, e.g. ``torch.tanh``.
    reduction : {"mean", "sum", "none"}
        ``"none"`` returns one value per item and channel, shape ``(B, C, 1, 1[, 1])``.
    num_workers : int, optional
        Threads for the batch PH; default the package's thread policy (:mod:`monai_topo.threads`: torch's thread count).
    """

    requires_target: bool
    """Whether :meth:`forward` needs a ground truth; read by :class:`TopologicalWrapperLoss`."""

    def __init__(
        self,
        connectivity: str = DEFAULT_CONNECTIVITY,
        include_background: bool = True,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: Callable | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
        num_workers: int | None = None,
    ) -> None:
        reductions = tuple(r.value for r in LossReduction)
        if reduction not in reductions:
            raise ValueError(f"reduction must be one of {reductions}, got {reduction!r}.")
        super().__init__(reduction=LossReduction(reduction).value)
        if other_act is not None and not callable(other_act):
            raise TypeError(f"other_act must be None or callable but is {type(other_act).__name__}.")
        for name, flag in (("include_background", include_background), ("sigmoid", sigmoid), ("softmax", softmax)):
            check_bool(flag, name)
        if num_workers is not None:
            check_int(num_workers, "num_workers", minimum=1)
        if int(sigmoid) + int(softmax) + int(other_act is not None) > 1:
            raise ValueError("Incompatible values: more than 1 of [sigmoid=True, softmax=True, other_act is not None].")
        self.connectivity = check_connectivity(connectivity)
        self.include_background = include_background
        self.sigmoid = sigmoid
        self.softmax = softmax
        self.other_act = other_act
        self.num_workers = num_workers

    def activate(self, input: torch.Tensor) -> torch.Tensor:
        """Validate ``input``, apply the configured activation and check the result is a probability map."""
        input = plain_tensor(input)
        if isinstance(input, torch.Tensor) and not input.is_floating_point():
            raise TypeError(f"input must be a floating-point tensor, got dtype {input.dtype}.")
        if not (self.sigmoid or self.softmax or self.other_act is not None):
            return check_probability_map(input, "input", "; for logits pass sigmoid=True or softmax=True")
        check_batch(input, "input")
        if self.sigmoid:
            input = torch.sigmoid(input)
        if self.softmax:
            if input.shape[1] == 1:
                warnings.warn("single channel prediction, `softmax=True` ignored.", stacklevel=3)
            else:
                input = torch.softmax(input, 1)
        if self.other_act is not None:
            input = self.other_act(input)
        return check_probability_map(input, "input (after activation)")

    def drop_background(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` without channel 0 when ``include_background`` is False (MONAI's rule)."""
        if self.include_background:
            return x
        if x.shape[1] == 1:
            warnings.warn("single channel prediction, `include_background=False` ignored.", stacklevel=3)
            return x
        return x[:, 1:]

    def reduce(self, loss: torch.Tensor, spatial_ndim: int) -> torch.Tensor:
        """Reduce a ``(B, C)`` loss as ``self.reduction`` says; ``"none"`` keeps a broadcastable shape."""
        if self.reduction == LossReduction.MEAN.value:
            return loss.mean()
        if self.reduction == LossReduction.SUM.value:
            return loss.sum()
        return loss.reshape(*loss.shape, *([1] * spatial_ndim))
