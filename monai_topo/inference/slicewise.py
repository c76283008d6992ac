"""Slice-by-slice inference with Eq. 5 refinement per item, as one MONAI inferer.

:class:`SliceWiseInferer` is the ``inferer`` of the bundles' ``inference.json`` and what
``monai-topo infer`` runs, so that a bundle run and the command segment an image the same way: a
volume given to a 2D network goes through it slice by slice along its last axis, each slice (or
the whole item for a network of the image's dimension) refined towards its own Betti-number prior
with :func:`~monai_topo.transforms.refine_with_topology`, and the end slices of a stack, which may
cut the organ's apex or base, take a looser prior.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer, SimpleInferer
from monai.utils import convert_to_dst_type

from monai_topo.priors import parse_prior
from monai_topo.transforms import refine_with_topology

RESERVED_REFINE_ARGS = ("prior", "network", "image", "inferer", "class_priors")
"""``refine_with_topology`` arguments that :class:`SliceWiseInferer` gives per item itself."""


def slice_priors(depth: int, prior, end_slice_prior=None, end_slices: int = 1) -> list:
    """The prior of each of ``depth`` slices: ``end_slice_prior`` for the ``end_slices`` first and last.

    A single slice (``depth == 1``) is not an end slice: it takes ``prior``.

    Examples
    --------
    >>> from monai_topo.inference.slicewise import slice_priors
    >>> slice_priors(4, [1, 1], [1, [0, 1]])
    [[1, [0, 1]], [1, 1], [1, 1], [1, [0, 1]]]
    >>> slice_priors(1, [1, 1], [1, [0, 1]])
    [[1, 1]]
    """
    if isinstance(end_slices, bool) or not isinstance(end_slices, int) or end_slices < 0:
        raise ValueError(f"end_slices must be an int >= 0, got end_slices={end_slices!r}.")
    if end_slice_prior is None or depth <= 1:
        return [prior] * depth
    return [end_slice_prior if min(i, depth - 1 - i) < end_slices else prior for i in range(depth)]


def _as_logits(probs: torch.Tensor, activation: str | None) -> torch.Tensor:
    """Logits whose activation gives ``probs`` back, so the refined output fits a logit post-processing
    (another activation, ``other_act``, is not inverted: the bundle's post-processing must expect that)."""
    eps = torch.finfo(probs.dtype).eps
    if activation == "sigmoid":
        return torch.logit(probs, eps=eps)
    if activation == "softmax":
        return probs.clamp_min(eps).log()
    return probs


class SliceWiseInferer(Inferer):
    """Run a network on each item, slice by slice when it takes one dimension fewer, refining each with Eq. 5.

    Returns what the network returns (logits), so a bundle's post-processing (activation,
    threshold or argmax, inversion of the preprocessing, saving) applies unchanged: a refined
    probability ``p`` comes back as ``logit(p)`` (sigmoid) or ``log(p)`` (softmax). The
    refinement record of each item of the last call is kept in :attr:`records`.

    Parameters
    ----------
    inferer : callable, optional
        The inner MONAI inferer, ``inferer(inputs, network)``, used for every item or slice and
        inside the refinement (e.g. a ``SlidingWindowInferer``); default ``SimpleInferer()``.
    spatial_dims : int, optional
        Spatial dimensions the network takes. An item with one more (a 3D stack for a 2D network)
        is split along its last axis; None takes every item as it is.
    prior : sequence, optional
        Betti prior of each item or slice, e.g. ``[1, 1]``; None: no refinement, no prior.
    end_slice_prior : sequence, optional
        Prior of the ``end_slices`` first and last slices of a stack (see :func:`slice_priors`).
    end_slices : int
        How many slices at each end of a stack take ``end_slice_prior``.
    refine : bool
        Refine towards the prior (Eq. 5); when False the network's output is kept and only the
        Betti numbers before refinement are recorded.
    refine_args : dict, optional
        Keyword arguments of :func:`~monai_topo.transforms.refine_with_topology` (``lambda_topo``,
        ``lr``, ``iterations``, ``sigmoid``/``softmax``, ``threshold``, ...).
    refine_inferer : callable, optional
        The inferer inside the refinement, for the initial prediction of an item with a prior and
        every step; default ``inferer``. A ``SimpleInferer`` runs a 3D volume in one pass, each
        step then costs one forward and backward pass instead of one per window (for a network
        whose output does not depend on the window, e.g. with batch norm rather than instance norm).

    Examples
    --------
    >>> import torch
    >>> from monai_topo.inference import SliceWiseInferer
    >>> net = torch.nn.Conv2d(1, 1, 1)
    >>> inferer = SliceWiseInferer(spatial_dims=2, prior=[1, 0], refine_args={"iterations": 2})
    >>> inferer(torch.rand(1, 1, 8, 8, 3), net).shape  # a stack of three slices
    torch.Size([1, 1, 8, 8, 3])
    >>> [record["priors"] for record in inferer.records]
    [[[1, 0], [1, 0], [1, 0]]]
    """

    def __init__(
        self,
        inferer: Callable | None = None,
        spatial_dims: int | None = None,
        prior: Sequence | None = None,
        end_slice_prior: Sequence | None = None,
        end_slices: int = 1,
        refine: bool = True,
        refine_args: dict[str, Any] | None = None,
        refine_inferer: Callable | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (None, 1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2, 3 or None, got spatial_dims={spatial_dims!r}.")
        refine_args = dict(refine_args or {})
        reserved = sorted(set(refine_args) & set(RESERVED_REFINE_ARGS))
        if reserved:
            raise ValueError(f"refine_args must not set {reserved}: SliceWiseInferer gives them per item.")
        self.inferer = SimpleInferer() if inferer is None else inferer
        self.refine_inferer = self.inferer if refine_inferer is None else refine_inferer
        self.spatial_dims = spatial_dims
        self.prior = prior
        self.end_slice_prior = end_slice_prior
        self.end_slices = end_slices
        self.refine = bool(refine)
        self.refine_args = refine_args
        slice_priors(1, prior, end_slice_prior, end_slices)  # validates end_slices
        for name, value in (("prior", prior), ("end_slice_prior", end_slice_prior)):
            if value is not None and spatial_dims is not None:
                parse_prior(value, spatial_dims, name=name)
        self.records: list[dict] = []

    def item_priors(self, count: int, sliced: bool) -> list:
        """The prior of each of ``count`` slices (or of the one item when not ``sliced``)."""
        if sliced:
            return slice_priors(count, self.prior, self.end_slice_prior, self.end_slices)
        return [self.prior] * count

    def _is_sliced(self, item: torch.Tensor) -> bool:
        ndim = item.ndim - 1
        if self.spatial_dims is None or ndim == self.spatial_dims:
            return False
        if ndim == self.spatial_dims + 1:
            return True
        raise ValueError(
            f"the input has {ndim} spatial dimensions (item shape {tuple(item.shape)}), but the network takes "
            f"{self.spatial_dims} (or {self.spatial_dims + 1}, slice by slice along the last axis)."
        )

    def _one(self, item: torch.Tensor, prior, network: torch.nn.Module) -> tuple[torch.Tensor, dict | None]:
        """Logits ``(C, *spatial)`` of one item or slice and its refinement record (None without a prior)."""
        if prior is None:
            return self.inferer(item[None], network)[0], None
        options = dict(self.refine_args, inferer=self.refine_inferer)
        if not self.refine:
            # the network's own output, with the Betti numbers it has
            options.update(iterations=0, inferer=self.inferer)
        probs, record = refine_with_topology(network, item, prior, **options)  # gradients even under no_grad
        return _as_logits(probs, record["activation"]), record

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args, **kwargs) -> torch.Tensor:
        """Logits ``(B, C, *spatial)`` of a batch ``(B, C_in, *spatial)``, item by item."""
        if not isinstance(inputs, torch.Tensor) or inputs.ndim < 3:
            raise ValueError(f"inputs must be a batch (B, C, *spatial), got {getattr(inputs, 'shape', type(inputs))}.")
        self.records = []
        outputs = []
        for item in inputs.unbind(0):
            sliced = self._is_sliced(item)
            parts = item.unbind(-1) if sliced else [item]
            priors = self.item_priors(len(parts), sliced)
            logits, records = zip(*(self._one(part, prior, network) for part, prior in zip(parts, priors)))
            outputs.append(torch.stack(logits, -1) if sliced else logits[0])
            self.records.append({"sliced": sliced, "priors": list(priors), "records": list(records)})
        return convert_to_dst_type(torch.stack(outputs), inputs)[0]
