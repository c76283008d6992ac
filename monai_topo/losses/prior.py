"""The Betti-number prior loss of Clough et al. (TPAMI 2020), Eq. 3-4: topology without ground truth."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from monai.utils import LossReduction

from monai_topo.losses.base import (
    PROBABILITY_TOLERANCE,
    TopologicalLoss,
    check_probability_map,
    loss_table,
    zero_gradient_where_constant,
)
from monai_topo.priors import (
    MAX_SPATIAL_NDIM,
    BettiPrior,
    parse_batch_priors,
    parse_class_priors,
    parse_prior,
)
from monai_topo.ph import DEFAULT_CONNECTIVITY, PersistenceDiagram, batch_persistence
from monai_topo.ph.downsample import pool


def parse_weights(weights, name: str = "weights") -> tuple[float, ...] | None:
    """Validate per-dimension weights: ``None``, or up to three finite numbers >= 0."""
    if weights is None:
        return None
    if isinstance(weights, torch.Tensor):
        weights = weights.tolist()
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise TypeError(f"{name} must be a sequence of one weight per homology dimension, got {weights!r}.")
    if not 1 <= len(weights) <= MAX_SPATIAL_NDIM:
        raise ValueError(f"{name} must have 1 to {MAX_SPATIAL_NDIM} entries (one per homology dimension), got {weights!r}.")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"{name} must be finite numbers >= 0, got {weights!r}.")
    return tuple(float(w) for w in weights)


def prior_loss_from_diagram(diagram: PersistenceDiagram, prior, weights=None) -> torch.Tensor:
    """Eq. 3-4 of Clough et al.: how far a diagram is from having the Betti numbers of ``prior``.

    In each dimension ``k`` the bars are ranked by length ``b - d``, longest first. The first
    ``min_k`` bars are pushed to length 1 with ``1 - length²``; bars ranked beyond ``max_k`` are
    pushed to length 0 with ``length²``; bars ranked in between are ignored (an exact prior has
    ``min_k = max_k = β*_k``, which is Eq. 3). A diagram with fewer than ``min_k`` bars counts each
    missing bar as a bar of length 0 (a constant 1), so the loss is 0 exactly when the diagram has
    ``min_k..max_k`` bars of length 1 and no other bars. Eq. 4 sums the dimensions, here with
    ``weights[k]``.

    Parameters
    ----------
    diagram : PersistenceDiagram
        Diagram of a probability map (values in [0, 1], so lengths are in [0, 1]).
    prior : any form :func:`monai_topo.priors.parse_prior` accepts
        Dimensions beyond its length are not constrained.
    weights : sequence of float, optional
        Weight of each homology dimension (default 1 each); needs an entry per prior dimension.

    Returns
    -------
    torch.Tensor
        A scalar, differentiable with respect to the map the diagram was computed from.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.ph import cubical_persistence
    >>> from monai_topo.losses import prior_loss_from_diagram
    >>> x = torch.zeros(7, 7)
    >>> x[1:6, 1:6] = 0.9
    >>> x[3, 3] = 0.2        # a ring: bars of length 0.9 (component) and 0.7 (hole)
    >>> round(float(prior_loss_from_diagram(cubical_persistence(x), (1, 1))), 4)   # (1-.81) + (1-.49)
    0.7
    >>> round(float(prior_loss_from_diagram(cubical_persistence(x), (1, 0))), 4)   # (1-.81) + .49
    0.68
    """
    prior = parse_prior(prior, len(diagram.spatial_shape))
    if len(prior) > diagram.maxdim + 1:
        raise ValueError(
            f"prior constrains {len(prior)} homology dimensions but the diagram was computed up to "
            f"dimension {diagram.maxdim}."
        )
    weights = parse_weights(weights)
    if weights is not None and len(weights) < len(prior):
        raise ValueError(f"weights {weights!r} has fewer entries than the prior constrains ({len(prior)}).")
    lengths = diagram.lengths()
    total = lengths.new_zeros(())
    for k, (low, high) in enumerate(zip(prior.min_counts, prior.max_counts)):
        ranked = torch.sort(lengths[diagram.dims == k], descending=True).values
        missing = max(0, low - len(ranked))
        term = (1 - ranked[:low].pow(2)).sum() + missing
        if high is not None:
            term = term + ranked[high:].pow(2).sum()
        total = total + (1.0 if weights is None else weights[k]) * term
    return total


class TopologicalPriorLoss(TopologicalLoss):
    """Betti-number prior loss (Clough et al., TPAMI 2020, Eq. 3-4): the topology of each map, no ground truth.

    For each item and channel the persistence diagram of the probability map's super-level
    filtration is computed (items in parallel, :func:`monai_topo.ph.batch_persistence`) and scored
    with :func:`prior_loss_from_diagram`: the ``β*_k`` longest bars of dimension ``k`` are pushed to
    length 1 and all other bars to 0, so gradients reach only the critical pixels/voxels that create
    or destroy features. A constant map gives its loss value with a zero gradient.

    Parameters
    ----------
    prior : optional
        Betti numbers ``(β0, β1[, β2])`` wanted for every item and channel, or per dimension a
        ``(min, max)`` range (``max=None``: no limit): e.g. ``(1, 1)`` ring, ``(1, 0, 0)`` solid
        blob, ``(1, (0, None))`` connected with any holes. Only the dimensions given are computed.
        Can be left out when priors are passed per item at call time.
    class_priors : dict, optional
        Multi-class priors (Byrne, Clough et al., TMI 2022) instead of ``prior``: a channel or a
        tuple of channels (their union: probabilities summed, so use ``softmax``) mapped to a prior.
        With channels (background, LV cavity, myocardium): ``{2: (1, 1), (1, 2): (1, 0)}``.
        Output channels follow the dict order. Channel indices refer to the activated input.
    weights : sequence of float, optional
        Weight of each homology dimension (Eq. 4 with weights); default 1 each.
    connectivity : {"full", "face"}
        Foreground adjacency (8/26 or 4/6-connected).
    include_background : bool
        If False, channel 0 is not scored (``prior`` mode only; with ``class_priors`` name the
        channels instead). With ``softmax=True`` and a single ``prior``, channel 0 is the background,
        so ``include_background=False`` is required (an error says so): the background of a ring is
        not a ring.
    sigmoid, softmax, other_act
        Activation applied to ``input`` first, as in :class:`monai.losses.DiceLoss`.
    reduction : {"mean", "sum", "none"}
        ``"none"``: shape ``(B, G, 1, 1[, 1])`` with ``G`` the number of scored channels (or of
        ``class_priors`` entries).
    num_workers : int, optional
        Threads for the batch PH; default the package's thread policy (:mod:`monai_topo.threads`: torch's thread count).
    downsample : int
        Opt-in speed-up (the paper suggests downsampling): compute PH on the maps pooled by this
        factor (:func:`monai_topo.ph.downsample.pool`, windows = strides); gradients flow back
        through the pooling to the full-resolution input. ``1`` (default) is exact. Thin gaps and
        specks smaller than the window can vanish: see the accuracy table in ``docs/benchmarks.md``.
    downsample_mode : {"max", "avg"}
        Pooling used with ``downsample > 1``; max keeps thin foreground.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.losses import TopologicalPriorLoss
    >>> logits = torch.randn(2, 1, 32, 32, requires_grad=True)
    >>> loss = TopologicalPriorLoss(prior=(1, 1), sigmoid=True)(logits)
    >>> loss.backward()
    >>> loss.ndim, logits.grad.shape
    (0, torch.Size([2, 1, 32, 32]))

    Mixed topologies in one batch, from per-item priors:

    >>> probs = torch.rand(2, 1, 16, 16)
    >>> TopologicalPriorLoss(reduction="none")(probs, prior=[(1, 0), (1, 1)]).shape
    torch.Size([2, 1, 1, 1])
    """

    requires_target = False

    def __init__(
        self,
        prior=None,
        class_priors=None,
        weights: Sequence[float] | None = None,
        connectivity: str = DEFAULT_CONNECTIVITY,
        include_background: bool = True,
        sigmoid: bool = False,
        softmax: bool = False,
        other_act: Callable | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
        num_workers: int | None = None,
        downsample: int = 1,
        downsample_mode: str = "max",
    ) -> None:
        super().__init__(connectivity, include_background, sigmoid, softmax, other_act, reduction, num_workers)
        if prior is not None and class_priors is not None:
            raise ValueError("give either prior or class_priors, not both.")
        self.prior = None if prior is None else parse_prior(prior)
        self.class_priors = None if class_priors is None else parse_class_priors(class_priors)
        if self.class_priors is not None and not include_background and any(0 in c for c in self.class_priors):
            raise ValueError("class_priors names channel 0 but include_background=False.")
        if softmax and include_background and self.class_priors is None:
            # After a softmax, channel 0 is the background, whose topology is not the foreground's
            # (a ring's background has Betti numbers (2, 0)): one prior for every channel is a mistake.
            raise ValueError(
                "softmax=True with include_background=True would apply the foreground prior to the background "
                "channel 0 as well; pass include_background=False to score only the foreground channels, or "
                "class_priors={channel: prior} to give each channel (or union of channels) its own prior."
            )
        self.weights = parse_weights(weights)
        longest = max((len(p) for p in self._static_priors()), default=0)
        if self.weights is not None and len(self.weights) < longest:
            raise ValueError(f"weights {self.weights!r} has fewer entries than the prior constrains ({longest}).")
        if isinstance(downsample, bool) or not isinstance(downsample, int) or downsample < 1:
            raise ValueError(f"downsample must be an int >= 1 (a pooling factor), got {downsample!r}.")
        if downsample_mode not in ("max", "avg"):
            raise ValueError(f"downsample_mode must be 'max' or 'avg', got {downsample_mode!r}.")
        self.downsample = downsample
        self.downsample_mode = downsample_mode

    def _static_priors(self) -> list[BettiPrior]:
        if self.class_priors is not None:
            return list(self.class_priors.values())
        return [] if self.prior is None else [self.prior]

    def scored_maps(self, probs: torch.Tensor, prior=None) -> tuple[torch.Tensor, list[list[BettiPrior]]]:
        """The ``(B, G, *spatial)`` maps this loss scores (channels, or class unions) and the prior of each ``[b][g]``.

        ``probs`` are activated probabilities; ``prior`` per-item priors as in :meth:`forward`.
        Used to check the same maps against the same priors elsewhere (e.g. test-time refinement).
        """
        batch, channels, spatial_ndim = probs.shape[0], probs.shape[1], probs.ndim - 2
        if self.class_priors is not None:
            if prior is not None:
                raise ValueError("per-item prior at call time cannot be combined with class_priors.")
            for group in self.class_priors:
                if max(group) >= channels:
                    raise ValueError(f"class_priors names channel {max(group)} but input has {channels} channels.")
            unions = torch.stack([probs[:, list(group)].sum(1) for group in self.class_priors], 1)
            if float(unions.detach().max()) > 1 + PROBABILITY_TOLERANCE:
                raise ValueError(
                    "class union probabilities sum above 1: unions need mutually exclusive class "
                    "probabilities (use softmax=True)."
                )
            # Rounding can leave a softmax sum a hair above 1, which would make 1 - length² negative.
            maps = unions.clamp(max=1)
            groups = [parse_prior(p, spatial_ndim) for p in self.class_priors.values()]
            return maps, [groups] * batch
        maps = self.drop_background(probs)
        if prior is not None:
            per_item = parse_batch_priors(prior, batch, spatial_ndim)
        elif self.prior is not None:
            per_item = [parse_prior(self.prior, spatial_ndim)] * batch
        else:
            raise ValueError("no prior: give prior= (or class_priors=) to the constructor or prior= at call time.")
        return maps, [[p] * maps.shape[1] for p in per_item]

    def forward(self, input: torch.Tensor, target: torch.Tensor | None = None, *, prior=None) -> torch.Tensor:
        """Score ``input`` against the priors.

        Parameters
        ----------
        input : torch.Tensor, shape (B, C, H, W) or (B, C, D, H, W)
            Probabilities, or logits with ``sigmoid``/``softmax``/``other_act``.
        target : ignored
            Accepted so that the loss can be a trainer's ``loss_function``; no ground truth is used.
        prior : optional, keyword only
            Per-item priors overriding the constructor's: a ``(B, d)`` or ``(B, d, 2)`` tensor, a
            list of ``B`` priors, or ``batch["prior"]`` as a MONAI ``DataLoader`` collates per-item
            priors (:func:`monai_topo.priors.batch_prior_items`); each item's prior applies to all
            its scored channels.

        Returns
        -------
        torch.Tensor
            Reduced as ``reduction`` says.
        """
        return self.score_probabilities(self.activate(input), prior=prior)

    def score_probabilities(self, probs: torch.Tensor, prior=None) -> torch.Tensor:
        """The loss of already activated probabilities: ``forward(x) == score_probabilities(activate(x))``.

        For callers that need the probabilities themselves too (test-time refinement ties them to
        the initial prediction), so that the activation is applied exactly once.

        Examples
        --------
        >>> import torch
        >>> from monai_topo.losses import TopologicalPriorLoss
        >>> loss = TopologicalPriorLoss(prior=(1, 1), sigmoid=True)
        >>> logits = torch.randn(2, 1, 16, 16)
        >>> bool(loss.score_probabilities(torch.sigmoid(logits)) == loss(logits))
        True
        """
        check_probability_map(probs, "probs")
        maps, priors = self.scored_maps(probs, prior)
        maxdim = max(len(p) for row in priors for p in row) - 1
        if self.downsample > 1:
            maps = pool(maps, self.downsample, self.downsample_mode)
        diagrams = batch_persistence(maps, maxdim=maxdim, connectivity=self.connectivity, num_workers=self.num_workers)
        loss = loss_table(lambda dgm, p: prior_loss_from_diagram(dgm, p, self.weights), diagrams, priors)
        return self.reduce(zero_gradient_where_constant(loss, maps), maps.ndim - 2)
