"""Differentiable cubical persistent homology of probability maps (super-level filtration)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from monai_topo.ph.backends import AUTO_BACKEND, BACKENDS, PairTable
from monai_topo.ph.diagram import PersistenceDiagram

CONNECTIVITIES = ("full", "face")
"""``"full"``: 8-connected foreground in 2D, 26 in 3D (background 4/6), the default.
``"face"``: 4-connected foreground in 2D, 6 in 3D (background 8/26)."""

DEFAULT_CONNECTIVITY = "full"


def check_connectivity(connectivity: str) -> str:
    """Return ``connectivity`` if it names a supported setting, else raise ``ValueError``."""
    if connectivity not in CONNECTIVITIES:
        raise ValueError(f"connectivity must be one of {CONNECTIVITIES}, got {connectivity!r}.")
    return connectivity


def resolve_backend(backend: str) -> str:
    """Map ``"auto"`` to the fastest installed backend and reject unknown names."""
    if backend == "auto":
        return AUTO_BACKEND
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {tuple(BACKENDS)}, got {backend!r}.")
    return backend


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


def _as_probability_tensor(x, name: str, spatial_ndims: Sequence[int], layout: str) -> torch.Tensor:
    """Validate a probability map and return it as a torch tensor (no copy for tensors)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
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
    values = x.detach()
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} contains NaN or Inf values.")
    if float(values.min()) < 0:
        raise ValueError(
            f"{name} must hold probabilities (values >= 0), got minimum {float(values.min()):.4g}; "
            "apply torch.sigmoid or torch.softmax to logits first."
        )
    return x


def _num_workers(num_workers: int | None, n_items: int) -> int:
    if num_workers is None:
        num_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}.")
    return max(1, min(num_workers, n_items))


def _sublevel_filtration(x: torch.Tensor) -> np.ndarray:
    """``-x`` as a new float64 numpy array: the engines compute sub-level persistence."""
    values = x.detach().cpu()
    if values.dtype not in (torch.float32, torch.float64):
        values = values.float()  # numpy has no bfloat16
    return np.negative(values.numpy(), dtype=np.float64)


def _diagram_from_pairs(x: torch.Tensor, pairs: PairTable, maxdim: int) -> PersistenceDiagram:
    """Gather birth/death values from ``x`` at the library's critical cells."""
    dims, birth_idx, death_idx = (torch.from_numpy(a).to(x.device) for a in pairs)
    flat = x.reshape(-1)
    essential = death_idx < 0
    births = flat[birth_idx]
    deaths = torch.where(essential, torch.zeros((), dtype=x.dtype, device=x.device), flat[death_idx.clamp(min=0)])
    # Zero-length bars come and go with tie-breaking; they carry no topology and no gradient.
    keep = essential | (births > deaths)
    return PersistenceDiagram(
        dims=dims[keep],
        births=births[keep],
        deaths=deaths[keep],
        birth_index=birth_idx[keep],
        death_index=death_idx[keep],
        essential=essential[keep],
        spatial_shape=tuple(x.shape),
        maxdim=maxdim,
    )


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
        A numpy array is accepted and wrapped without copying.
    maxdim : int, optional
        Highest homology dimension to compute; default all (1 in 2D, 2 in 3D).
    connectivity : {"full", "face"}
        ``"full"``: 8-connected (2D) / 26-connected (3D) foreground. ``"face"``: 4 / 6.
    backend : {"auto", "cripser", "gudhi"}
        PH engine; ``"auto"`` picks the fastest (cripser). All give the same diagram.

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
    x = _as_probability_tensor(x, "x", (2, 3), "(H, W) or (D, H, W)")
    maxdim = _check_maxdim(maxdim, x.ndim)
    pairs = BACKENDS[resolve_backend(backend)](_sublevel_filtration(x), maxdim, check_connectivity(connectivity))
    return _diagram_from_pairs(x, pairs, maxdim)


def batch_persistence(
    x: torch.Tensor,
    maxdim: int | None = None,
    connectivity: str = DEFAULT_CONNECTIVITY,
    backend: str = "auto",
    num_workers: int | None = None,
) -> list[list[PersistenceDiagram]]:
    """Persistence diagrams of every item and channel of a ``(B, C, *spatial)`` batch.

    The items are computed in parallel threads (the PH engines release the GIL); the result
    is identical to calling :func:`cubical_persistence` on each ``x[b, c]``.

    Parameters
    ----------
    x : torch.Tensor, shape (B, C, H, W) or (B, C, D, H, W)
        Floating-point probabilities, any device.
    maxdim, connectivity, backend
        As in :func:`cubical_persistence`.
    num_workers : int, optional
        Number of threads; default the number of available CPU cores.

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
    x = _as_probability_tensor(x, "x", (4, 5), "(B, C, H, W) or (B, C, D, H, W)")
    maxdim = _check_maxdim(maxdim, x.ndim - 2)
    connectivity = check_connectivity(connectivity)
    compute = BACKENDS[resolve_backend(backend)]
    batch, channels = x.shape[:2]
    filtrations = _sublevel_filtration(x).reshape(batch * channels, *x.shape[2:])
    workers = _num_workers(num_workers, len(filtrations))

    def run(f: np.ndarray) -> PairTable:
        return compute(f, maxdim, connectivity)

    if workers == 1:
        tables = [run(f) for f in filtrations]
    else:
        with ThreadPoolExecutor(workers) as pool:
            tables = list(pool.map(run, filtrations))
    items = x.reshape(batch * channels, *x.shape[2:])
    diagrams = [_diagram_from_pairs(item, table, maxdim) for item, table in zip(items, tables)]
    return [diagrams[b * channels : (b + 1) * channels] for b in range(batch)]
