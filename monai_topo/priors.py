"""Betti-number priors: plain data that says which topology a segmentation should have.

A prior constrains the Betti numbers ``(β0, β1[, β2])`` of a mask, dimension by dimension, with
either an exact count or an inclusive ``(min, max)`` range (``max=None`` or ``inf``: no upper
limit). Dimensions beyond the prior's length are not constrained. The losses, metrics,
transforms and batch inference all read priors through this module, so they accept the same
spellings and raise the same errors.

Per-item priors stored in data dictionaries (``{"image": ..., "prior": [1, 1]}``) reach a batch
in the form MONAI's ``DataLoader`` collates them to: one tensor per homology dimension, each with
one entry per item. :func:`batch_prior_items` and :func:`parse_batch_priors` undo that, so every
consumer gives each item its own prior.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

MAX_SPATIAL_NDIM = 3
"""Images are 2D or 3D, so a prior has at most three entries (β0, β1, β2)."""


@dataclass(frozen=True)
class BettiPrior:
    """Acceptable Betti numbers: ``min_counts[k] <= β_k <= max_counts[k]`` for each constrained ``k``.

    Build it with :func:`parse_prior` rather than directly, so the entries are validated.

    Attributes
    ----------
    min_counts : tuple of int
        Least acceptable Betti number per homology dimension.
    max_counts : tuple of int or None
        Largest acceptable Betti number per dimension; ``None`` means no upper limit.

    Examples
    --------
    >>> from monai_topo.priors import parse_prior
    >>> parse_prior((1, (0, 2)))
    BettiPrior(min_counts=(1, 0), max_counts=(1, 2))
    >>> len(parse_prior((1, 1)))
    2
    """

    min_counts: tuple[int, ...]
    max_counts: tuple[int | None, ...]

    def __len__(self) -> int:
        return len(self.min_counts)

    def allows(self, dim: int, count: int) -> bool:
        """Whether ``count`` features in homology dimension ``dim`` satisfy the prior."""
        upper = self.max_counts[dim]
        return self.min_counts[dim] <= count and (upper is None or count <= upper)


def _count(value, name: str, allow_unbounded: bool = False) -> int | None:
    """One Betti count: a non-negative whole number (``None``/``inf`` where unbounded is allowed)."""
    if allow_unbounded and (value is None or (isinstance(value, float) and math.isinf(value) and value > 0)):
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a whole number, got {value!r} ({type(value).__name__}).")
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"{name} must be a whole number, got {value!r}.")
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (a number of features), got {value!r}.")
    return int(value)


def _plain(value):
    """``value`` with every tensor and numpy value turned into Python numbers and lists."""
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _entries(prior, name: str) -> list:
    prior = _plain(prior)
    if isinstance(prior, (str, bytes)) or not isinstance(prior, Sequence):
        raise TypeError(
            f"{name} must be a sequence of Betti numbers like (1, 1) or (1, (0, 2)), got {prior!r}."
        )
    return list(prior)


def parse_prior(prior, spatial_ndim: int | None = None, name: str = "prior") -> BettiPrior:
    """Validate a Betti-number prior and return it as a :class:`BettiPrior`.

    Parameters
    ----------
    prior : sequence, numpy.ndarray, torch.Tensor or BettiPrior
        One entry per homology dimension, starting at 0: an exact count ``β_k`` or an inclusive
        range ``(min, max)`` (``max`` may be ``None`` or ``inf`` for no upper limit). Examples:
        ``(1, 1)`` a ring, ``(1, 0, 0)`` a solid 3D blob, ``(1, (0, None))`` connected with any
        number of holes. A tensor of shape ``(d,)`` or ``(d, 2)`` is read the same way.
    spatial_ndim : int, optional
        Spatial dimensions of the image (2 or 3): the prior may have at most that many entries.
    name : str
        Name used in error messages.

    Returns
    -------
    BettiPrior

    Raises
    ------
    TypeError
        An entry is not a whole number or a pair.
    ValueError
        Empty prior, negative counts, ``min > max``, or more entries than the image has
        homology dimensions.

    Examples
    --------
    >>> from monai_topo.priors import parse_prior
    >>> parse_prior((1, 1), spatial_ndim=2)
    BettiPrior(min_counts=(1, 1), max_counts=(1, 1))
    >>> parse_prior([1, (0, None)]).max_counts
    (1, None)
    """
    if isinstance(prior, BettiPrior):
        entries = list(zip(prior.min_counts, prior.max_counts))
    else:
        entries = _entries(prior, name)
    if spatial_ndim is not None and spatial_ndim not in (2, 3):
        raise ValueError(f"spatial_ndim must be 2 or 3, got {spatial_ndim!r}.")
    limit = MAX_SPATIAL_NDIM if spatial_ndim is None else spatial_ndim
    if not entries:
        raise ValueError(f"{name} is empty; give at least β0, e.g. (1,) for one connected component.")
    if len(entries) > limit:
        raise ValueError(
            f"{name} has {len(entries)} entries {prior!r}, but a {limit}D image has only homology dimensions "
            f"0..{limit - 1} (at most {limit} Betti numbers)."
        )
    min_counts, max_counts = [], []
    for k, entry in enumerate(entries):
        if isinstance(entry, (list, tuple)):
            if len(entry) != 2:
                raise ValueError(f"{name}[{k}] must be a count or a (min, max) pair, got {entry!r}.")
            low = _count(entry[0], f"{name}[{k}] min")
            high = _count(entry[1], f"{name}[{k}] max", allow_unbounded=True)
            if high is not None and low > high:
                raise ValueError(f"{name}[{k}] has min > max: {entry!r}.")
        else:
            low = high = _count(entry, f"{name}[{k}]")
        min_counts.append(low)
        max_counts.append(high)
    return BettiPrior(tuple(min_counts), tuple(max_counts))


def _leaves(value):
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _is_collated(priors) -> bool:
    """Whether ``priors`` is a list holding 1-D tensors, as default collation makes of per-item lists.

    Rows of one tensor (``list(priors_tensor)``) are views of it, which collation never makes:
    those are one prior per item.
    """
    return isinstance(priors, (list, tuple)) and any(
        isinstance(leaf, torch.Tensor) and leaf.ndim == 1 and leaf._base is None for leaf in _leaves(priors)
    )


def _uncollate(collated, batch_size: int) -> list:
    """Per-item priors from their collated form ``[tensor(B), tensor(B)]`` (or nested, for ranges)."""

    def item(value, b: int):
        if isinstance(value, (list, tuple)):
            return [item(v, b) for v in value]
        if not (isinstance(value, torch.Tensor) and value.ndim == 1 and len(value) == batch_size):
            raise ValueError(
                "per-item priors look collated by a DataLoader (a list holding one tensor per homology "
                f"dimension, each with one entry per item), but an entry is {value!r} where a tensor of "
                f"{batch_size} values (one per item) was expected. To give priors yourself, pass a list of "
                f"{batch_size} tuples like [(1, 1), (1, 0)] or a (B, d) tensor."
            )
        return value[b].item()

    return [item(collated, b) for b in range(batch_size)]


def batch_prior_items(priors, batch_size: int) -> list:
    """One raw prior per batch item, from any per-item form, including a DataLoader's collation.

    Parameters
    ----------
    priors : sequence or torch.Tensor or numpy.ndarray
        - a list of ``batch_size`` priors (tuples, lists, arrays; ``None`` for an unknown item);
        - a tensor or array of shape ``(B, d)`` (exact counts) or ``(B, d, 2)`` (ranges);
        - the collated form of per-item priors stored as lists in data dictionaries: MONAI's
          ``DataLoader`` turns ``[1, 0]`` and ``[2, 1]`` into ``[tensor([1, 2]), tensor([0, 1])]``,
          one tensor per homology dimension (ranges nest one level deeper; write an unbounded
          maximum as ``float("inf")``, since ``None`` cannot be collated). A list that holds 1-D
          torch tensors is always read this way, except the rows of one tensor (``list(t)`` of a
          ``(B, d)`` tensor ``t``), which are one prior per item.
    batch_size : int
        Number of items the priors must cover.

    Returns
    -------
    list
        ``batch_size`` priors as plain Python values (not yet validated: see :func:`parse_batch_priors`).

    Examples
    --------
    >>> import torch
    >>> from monai_topo.priors import batch_prior_items
    >>> batch_prior_items([torch.tensor([1, 2]), torch.tensor([0, 1])], 2)   # collated [1, 0] and [2, 1]
    [[1, 0], [2, 1]]
    >>> batch_prior_items(torch.tensor([[1, 0], [2, 1]]), 2)
    [[1, 0], [2, 1]]
    """
    if isinstance(priors, (torch.Tensor, np.ndarray)):
        if priors.ndim not in (2, 3):
            raise ValueError(
                f"per-item priors must have shape (B, d) or (B, d, 2), got shape {tuple(priors.shape)}; "
                "for one prior shared by every item, pass it as prior= to the constructor."
            )
        items = priors.tolist()
    elif _is_collated(priors):
        items = _uncollate(priors, batch_size)
    elif isinstance(priors, (str, bytes)) or not isinstance(priors, Sequence):
        raise TypeError(f"per-item priors must be a (B, d) tensor or a list of B priors, got {priors!r}.")
    else:
        items = [_plain(p) for p in priors]
        if items and all(isinstance(p, (int, float)) or p is None for p in items) and not all(p is None for p in items):
            raise ValueError(
                f"per-item priors expected (one per item), got the single prior {priors!r} for {batch_size} items; "
                f"pass [{tuple(items)!r}] * {batch_size}, or give it as prior= at construction."
            )
    if len(items) != batch_size:
        raise ValueError(f"got {len(items)} per-item priors for a batch of {batch_size} items: {priors!r}.")
    return items


def parse_batch_priors(priors, batch_size: int, spatial_ndim: int | None = None) -> list[BettiPrior]:
    """Validate one prior per batch item.

    Parameters
    ----------
    priors : sequence or torch.Tensor
        ``batch_size`` priors in any form :func:`batch_prior_items` reads: a list of priors, a
        ``(B, d)`` or ``(B, d, 2)`` tensor, or per-item priors as a MONAI ``DataLoader`` collates them.
    batch_size : int
        Number of items the priors must cover.
    spatial_ndim : int, optional
        As in :func:`parse_prior`.

    Returns
    -------
    list of BettiPrior

    Examples
    --------
    >>> import torch
    >>> from monai.data import DataLoader
    >>> from monai_topo.priors import parse_batch_priors
    >>> [p.min_counts for p in parse_batch_priors(torch.tensor([[1, 0], [1, 1]]), 2)]
    [(1, 0), (1, 1)]
    >>> batch = next(iter(DataLoader([{"prior": [1, 0]}, {"prior": [2, 1]}], batch_size=2)))
    >>> [p.min_counts for p in parse_batch_priors(batch["prior"], 2)]
    [(1, 0), (2, 1)]
    """
    items = batch_prior_items(priors, batch_size)
    return [parse_prior(p, spatial_ndim, name=f"prior[{b}]") for b, p in enumerate(items)]


def parse_class_priors(class_priors, spatial_ndim: int | None = None) -> dict[tuple[int, ...], BettiPrior]:
    """Validate multi-class priors: a channel, or a union of channels, mapped to a prior.

    Parameters
    ----------
    class_priors : mapping
        Keys are a channel index or a tuple of channel indices (their union: probabilities summed);
        values are priors as :func:`parse_prior` accepts. Example for cardiac MRI with channels
        (background, LV cavity, myocardium): ``{2: (1, 1), (1, 2): (1, 0)}``.
    spatial_ndim : int, optional
        As in :func:`parse_prior`.

    Returns
    -------
    dict
        Sorted channel tuples mapped to :class:`BettiPrior`, in the order given.

    Examples
    --------
    >>> from monai_topo.priors import parse_class_priors
    >>> list(parse_class_priors({2: (1, 1), (2, 1): (1, 0)}))
    [(2,), (1, 2)]
    """
    if not isinstance(class_priors, Mapping) or not class_priors:
        raise TypeError(f"class_priors must be a non-empty dict {{channel or channels: prior}}, got {class_priors!r}.")
    parsed: dict[tuple[int, ...], BettiPrior] = {}
    for key, prior in class_priors.items():
        channels = key if isinstance(key, tuple) else (key,)
        if not channels or any(
            isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)) or c < 0 for c in channels
        ):
            raise ValueError(f"class_priors key must be a channel index >= 0 or a tuple of them, got {key!r}.")
        if len(set(channels)) != len(channels):
            raise ValueError(f"class_priors key {key!r} repeats a channel.")
        channels = tuple(sorted(int(c) for c in channels))
        if channels in parsed:
            raise ValueError(f"class_priors names the channels {channels} twice.")
        parsed[channels] = parse_prior(prior, spatial_ndim, name=f"class_priors[{key!r}]")
    return parsed


def prior_satisfied(betti: Sequence[int], prior) -> bool:
    """Whether Betti numbers satisfy a prior in every dimension the prior constrains.

    Parameters
    ----------
    betti : sequence of int
        Betti numbers ``(β0, β1[, β2])``, e.g. from :func:`monai_topo.ph.betti_numbers`.
    prior : any form :func:`parse_prior` accepts
        Dimensions beyond its length are not checked.

    Examples
    --------
    >>> from monai_topo.priors import prior_satisfied
    >>> prior_satisfied((1, 1), (1, 1)), prior_satisfied((1, 3), (1, (0, 2))), prior_satisfied((2, 0, 0), (1,))
    (True, False, False)
    """
    prior = parse_prior(prior)
    if len(betti) < len(prior):
        raise ValueError(f"betti {tuple(betti)!r} has fewer dimensions than the prior constrains ({len(prior)}).")
    return all(prior.allows(k, int(betti[k])) for k in range(len(prior)))
