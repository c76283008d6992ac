"""Betti-number priors as per-dimension ``[min, max]`` bounds, for the topology metrics.

A prior is plain data: ``(β0, β1[, β2])``, or a ``(min, max)`` pair for any dimension whose
count may vary, e.g. ``(1, (0, 2))``. A batch carries one prior per item; an item whose
topology is unknown (``None`` in a list, a row of NaN in an array) is scored NaN so that
MONAI's reductions leave it out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
        # Decollated data dictionaries hold priors as lists of 0-d tensors.
        return np.asarray([_to_numpy(v) for v in value], dtype=object)
    return np.asarray(value, dtype=object)


def _as_count(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must hold Betti numbers (non-negative integers), got {value!r}.")
    try:
        count = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must hold Betti numbers (non-negative integers), got {value!r}.") from None
    if not (np.isfinite(count) and count >= 0 and count == int(count)):
        raise ValueError(f"{name} must hold Betti numbers (non-negative integers), got {value!r}.")
    return count


def prior_bounds(prior, name: str = "prior") -> np.ndarray:
    """Validate one Betti prior and return its bounds as a ``(d, 2)`` float array.

    Parameters
    ----------
    prior : sequence or array
        ``(β0, β1[, β2])`` (exact counts), with any entry optionally a ``(min, max)`` pair;
        or an array of shape ``(d,)`` or ``(d, 2)``.
    name : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray, shape (d, 2)
        ``[:, 0]`` minimum and ``[:, 1]`` maximum count per homology dimension.

    Examples
    --------
    >>> from monai_topo.metrics.priors import prior_bounds
    >>> prior_bounds((1, (0, 2))).tolist()
    [[1.0, 1.0], [0.0, 2.0]]
    """
    if prior is None or isinstance(prior, (str, bytes, dict)) or np.ndim(_to_numpy(prior)) == 0:
        raise TypeError(
            f"{name} must be a sequence of Betti numbers such as (1, 1) or (1, 0, 0), got {prior!r}."
        )
    entries = _to_numpy(prior)
    if entries.ndim == 2 and entries.shape[1] == 2:
        entries = list(entries)
    elif entries.ndim != 1:
        raise ValueError(
            f"{name} must have shape (d,) or (d, 2) for d homology dimensions, got shape {entries.shape}."
        )
    if not 2 <= len(entries) <= 3:
        raise ValueError(
            f"{name} must give 2 Betti numbers for 2D images (β0, β1) or 3 for 3D images (β0, β1, β2), "
            f"got {len(entries)}: {prior!r}."
        )
    bounds = np.empty((len(entries), 2))
    for k, entry in enumerate(entries):
        pair = _to_numpy(entry)
        if pair.ndim == 0:
            bounds[k] = _as_count(entry, name)
        elif pair.shape == (2,):
            bounds[k] = [_as_count(v, name) for v in pair]
            if bounds[k, 0] > bounds[k, 1]:
                raise ValueError(f"{name}: the range for β{k} must be (min, max) with min <= max, got {tuple(pair)}.")
        else:
            raise ValueError(f"{name}: β{k} must be a count or a (min, max) pair, got {entry!r}.")
    return bounds


def _is_unknown(item) -> bool:
    if item is None:
        return True
    if isinstance(item, (torch.Tensor, np.ndarray)) and np.issubdtype(_to_numpy(item).dtype, np.floating):
        values = _to_numpy(item).astype(float)
        return values.size > 0 and bool(np.isnan(values).all())
    return False


def batch_prior_bounds(priors, batch_size: int, ndim: int, name: str = "prior") -> np.ndarray:
    """Validate one prior per item and return their bounds as a ``(B, d, 2)`` array.

    Parameters
    ----------
    priors : sequence or array
        ``B`` priors: a list of priors as accepted by :func:`prior_bounds` (``None`` for an item
        whose topology is unknown), or an array of shape ``(B, d)`` or ``(B, d, 2)`` (rows of
        NaN for unknown items).
    batch_size : int
        Expected number of items ``B``.
    ndim : int
        Spatial dimension of the images (2 or 3); each prior must have ``d = ndim`` entries.
    name : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray, shape (B, d, 2)
        Minimum and maximum count per item and homology dimension; NaN for unknown items.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.metrics.priors import batch_prior_bounds
    >>> batch_prior_bounds(torch.tensor([[1, 1], [1, 0]]), 2, 2)[:, :, 0].tolist()
    [[1.0, 1.0], [1.0, 0.0]]
    """
    if isinstance(priors, (str, bytes, dict)) or not isinstance(priors, (Sequence, np.ndarray, torch.Tensor)):
        raise TypeError(
            f"{name} must hold one prior per item: a list of B Betti tuples or a (B, d) array, got {priors!r}."
        )
    if len(priors) != batch_size:
        raise ValueError(f"{name} must hold one prior per item: expected {batch_size}, got {len(priors)}.")
    bounds = np.full((batch_size, ndim, 2), np.nan)
    for b, item in enumerate(priors):
        if _is_unknown(item):
            continue
        item_bounds = prior_bounds(item, f"{name}[{b}]")
        if len(item_bounds) != ndim:
            expected = "(β0, β1)" if ndim == 2 else "(β0, β1, β2)"
            raise ValueError(
                f"{name}[{b}] has {len(item_bounds)} Betti numbers but the images are {ndim}D and need "
                f"{ndim} {expected}."
            )
        bounds[b] = item_bounds
    return bounds
