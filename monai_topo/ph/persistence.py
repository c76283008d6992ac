"""Differentiable cubical persistent homology of probability maps (super-level filtration)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from monai_topo.ph.backends import AUTO_BACKEND, BACKENDS, batch_pairs
from monai_topo.ph.diagram import PersistenceDiagram
from monai_topo.ph.host import probability_values, resolve_workers
from monai_topo.validation import native_array

CONNECTIVITIES = ("full", "face")
"""``"full"``: 8-connected foreground in 2D, 26 in 3D (background 4/6), the default.
``"face"``: 4-connected foreground in 2D, 6 in 3D (background 8/26)."""

DEFAULT_CONNECTIVITY = "full"


def check_connectivity(connectivity: str) -> str:
    """Return ``connectivity`` if it names a supported setting, else raise ``ValueError``."""
    if not isinstance(connectivity, str) or connectivity not in CONNECTIVITIES:
        raise ValueError(f"connectivity must be one of {CONNECTIVITIES}, got {connectivity!r}.")
    return connectivity


def resolve_backend(backend: str) -> str:
    """Map ``"auto"`` to the fastest installed backend and reject unknown names."""
    if not isinstance(backend, str) or backend not in ("auto", *BACKENDS):
        raise ValueError(f"backend must be 'auto' or one of {tuple(BACKENDS)}, got {backend!r}.")
    return AUTO_BACKEND if backend == "auto" else backend


def _check_maxdim(maxdim: int | None, spatial_ndim: int) -> int:
    if maxdim is None:
        return spatial_ndim - 1
    if isinstance(maxdim, bool) or not isinstance(maxdim, (int, np.integer)):
        raise TypeError(f"maxdim must be an int or None, got {maxdim!r}.")
    if not 0 <= maxdim < spatial_ndim:
        raise ValueError(
            f"maxdim must be between 0 and {spatial_ndim - 1} for a {spatial_ndim}D image, got {maxdim}."
        )
    return int(maxdim)


def as_probability_tensor(x, name: str, spatial_ndims: Sequence[int], layout: str) -> torch.Tensor:
    """Check the type, shape and dtype of a probability map; return it as a tensor (no copy)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(native_array(x, name))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}.")
    if x.ndim not in spatial_ndims:
        raise ValueError(
            f"{name} must have shape {layout} with 2 or 3 spatial dimensions, got shape {tuple(x.shape)}."
        )
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}).")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point probability map, got dtype {x.dtype}; "
            "convert a binary mask with .float() or use betti_numbers(mask)."
        )
    return x


def _diagrams(
    items: torch.Tensor, name: str, maxdim: int, connectivity: str, backend: str, num_workers: int | None
) -> list[PersistenceDiagram]:
    """Diagrams of a stack ``(n, *spatial)``: one engine call and one gather for the whole stack."""
    values = probability_values(items, name)
    n = items.shape[0]
    dims, birth_idx, death_idx, counts = batch_pairs(
        values, maxdim, check_connectivity(connectivity), resolve_backend(backend), resolve_workers(num_workers)
    )
    item = np.repeat(np.arange(n), counts)
    essential = death_idx < 0
    global_births = birth_idx + item * values[0].size
    global_deaths = np.where(essential, global_births, death_idx + item * values[0].size)
    flat_values = values.reshape(-1)
    # Zero-length bars come and go with tie-breaking; they carry no topology and no gradient.
    keep = essential | (flat_values[global_births] > flat_values[global_deaths])
    if not keep.all():
        dims, birth_idx, death_idx, essential, global_births, global_deaths, item = (
            a[keep] for a in (dims, birth_idx, death_idx, essential, global_births, global_deaths, item)
        )
    dims, birth_idx, death_idx, essential, global_births, global_deaths = (
        torch.from_numpy(a).to(items.device)
        for a in (dims, birth_idx, death_idx, essential, global_births, global_deaths)
    )
    flat = items.reshape(-1)
    # index_select rather than flat[index]: the advanced-indexing kernel hands even a few thousand
    # elements to the thread pool, which costs milliseconds whenever the cores are busy.
    births = flat.index_select(0, global_births)
    zero = torch.zeros((), dtype=items.dtype, device=items.device)
    deaths = torch.where(essential, zero, flat.index_select(0, global_deaths))
    sizes = np.bincount(item, minlength=n).tolist()
    columns = (torch.split(t, sizes) for t in (dims, births, deaths, birth_idx, death_idx, essential))
    spatial_shape = tuple(items.shape[1:])
    return [PersistenceDiagram(*fields, spatial_shape=spatial_shape, maxdim=maxdim) for fields in zip(*columns)]


def cubical_persistence(
    x: torch.Tensor,
    maxdim: int | None = None,
    connectivity: str = DEFAULT_CONNECTIVITY,
    backend: str = "auto",
) -> PersistenceDiagram:
    """Persistence diagram of the super-level filtration of a 2D or 3D probability map.

    Parameters
    ----------
    x : torch.Tensor, shape (H, W) or (D, H, W)
        Floating-point probabilities (values >= 0, normally in [0, 1]); any device.
        A numpy array is accepted and wrapped without copying (copied only when torch cannot
        wrap it: negative strides as from ``np.flip``, or non-native byte order such as ``'>f4'``).
    maxdim : int, optional
        Highest homology dimension to compute; default all (1 in 2D, 2 in 3D).
    connectivity : {"full", "face"}
        ``"full"``: 8-connected (2D) / 26-connected (3D) foreground. ``"face"``: 4 / 6.
    backend : {"auto", "unionfind", "cripser", "gudhi"}
        PH engine; ``"auto"`` picks the fastest (``"unionfind"``, this package's compiled
        union-find engine, :mod:`monai_topo.ph.unionfind`). All give the same diagram. A large
        3D volume uses all CPU cores.

    Returns
    -------
    PersistenceDiagram
        Births and deaths are gathered from ``x``, so autograd reaches the critical cells.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.ph import cubical_persistence
    >>> ring = torch.zeros(9, 9)
    >>> ring[2:7, 2:7] = 0.8
    >>> ring[4, 4] = 0.1
    >>> cubical_persistence(ring).betti(0.5)
    (1, 1)
    """
    x = as_probability_tensor(x, "x", (2, 3), "(H, W) or (D, H, W)")
    return _diagrams(x[None], "x", _check_maxdim(maxdim, x.ndim), connectivity, backend, None)[0]


def batch_persistence(
    x: torch.Tensor,
    maxdim: int | None = None,
    connectivity: str = DEFAULT_CONNECTIVITY,
    backend: str = "auto",
    num_workers: int | None = None,
) -> list[list[PersistenceDiagram]]:
    """Persistence diagrams of every item and channel of a ``(B, C, *spatial)`` batch.

    The items are computed in parallel threads (the PH engines release the GIL), the
    ``"unionfind"`` engine taking the whole batch in one call per thread; the result is identical
    to calling :func:`cubical_persistence` on each ``x[b, c]``.

    Parameters
    ----------
    x : torch.Tensor, shape (B, C, H, W) or (B, C, D, H, W)
        Floating-point probabilities, any device.
    maxdim, connectivity, backend
        As in :func:`cubical_persistence`.
    num_workers : int, optional
        Number of threads; default :func:`monai_topo.threads.ph_num_threads` (as many as torch
        uses). With fewer items than threads, the ``"unionfind"`` engine splits each large image over the threads instead.

    Returns
    -------
    list of list of PersistenceDiagram
        ``result[b][c]`` is the diagram of ``x[b, c]``.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.ph import batch_persistence
    >>> x = torch.rand(4, 2, 32, 32)
    >>> dgms = batch_persistence(x)
    >>> len(dgms), len(dgms[0])
    (4, 2)
    """
    x = as_probability_tensor(x, "x", (4, 5), "(B, C, H, W) or (B, C, D, H, W)")
    maxdim = _check_maxdim(maxdim, x.ndim - 2)
    batch, channels = x.shape[:2]
    items = x.reshape(batch * channels, *x.shape[2:])
    diagrams = _diagrams(items, "x", maxdim, connectivity, backend, num_workers)
    return [diagrams[b * channels : (b + 1) * channels] for b in range(batch)]
