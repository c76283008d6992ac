"""Persistent homology of a pooled (downsampled) probability map, differentiable to full resolution.

Pooling by ``factor`` in every spatial axis divides the voxels, and so the PH time, by about
``factor ** ndim``. The pooling is a torch operation, so the gradient of any function of the
diagrams flows back through it to the full-resolution map: max pooling sends it to the voxel that
won each window, average pooling spreads it over the window. The price is resolution: features
thinner or closer than a window merge or vanish (max pooling keeps thin foreground, at the cost of
closing small holes; average pooling does the opposite). ``docs/benchmarks.md`` measures the
effect on Betti numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from monai_topo.ph.diagram import PersistenceDiagram
from monai_topo.ph.persistence import DEFAULT_CONNECTIVITY, as_probability_tensor, batch_persistence
from monai_topo.validation import check_int

POOLING_MODES = ("max", "avg")


def pool(x: torch.Tensor, factor: int = 2, mode: str = "max") -> torch.Tensor:
    """Pool a ``(B, C, *spatial)`` batch by ``factor`` in each spatial axis (windows = strides).

    Parameters
    ----------
    x : torch.Tensor, shape (B, C, H, W) or (B, C, D, H, W)
        Floating-point probability maps (a numpy array is wrapped as a tensor).
    factor : int
        Window size and stride (voxels); ``1`` returns ``x`` itself. Partial windows at the far
        edges are kept (pooled over the voxels they hold), so the output side is ``ceil(side / factor)``.
    mode : {"max", "avg"}
        Max pooling (keeps thin foreground) or average pooling.

    Returns
    -------
    torch.Tensor
        The pooled batch, differentiable with respect to ``x``.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.ph.downsample import pool
    >>> pool(torch.rand(2, 1, 7, 9)).shape
    torch.Size([2, 1, 4, 5])
    """
    factor = check_int(factor, "factor", minimum=1)
    if not isinstance(mode, str) or mode not in POOLING_MODES:
        raise ValueError(f"mode must be one of {POOLING_MODES}, got {mode!r}.")
    x = as_probability_tensor(x, "x", (4, 5), "(B, C, H, W) or (B, C, D, H, W)")
    if factor == 1:
        return x
    pooling = {("max", 4): F.max_pool2d, ("max", 5): F.max_pool3d, ("avg", 4): F.avg_pool2d, ("avg", 5): F.avg_pool3d}
    return pooling[mode, x.ndim](x, factor, ceil_mode=True)


def downsampled_persistence(
    x: torch.Tensor,
    factor: int = 2,
    mode: str = "max",
    maxdim: int | None = None,
    connectivity: str = DEFAULT_CONNECTIVITY,
    backend: str = "auto",
    num_workers: int | None = None,
) -> list[list[PersistenceDiagram]]:
    """:func:`~monai_topo.ph.batch_persistence` of the batch pooled by :func:`pool`.

    Parameters
    ----------
    x : torch.Tensor, shape (B, C, H, W) or (B, C, D, H, W)
        Probability maps at full resolution.
    factor, mode
        As in :func:`pool`.
    maxdim, connectivity, backend, num_workers
        As in :func:`~monai_topo.ph.batch_persistence`.

    Returns
    -------
    list of list of PersistenceDiagram
        ``result[b][c]``; critical-cell indices and ``spatial_shape`` refer to the pooled grid, while
        births and deaths back-propagate into ``x``.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.ph.downsample import downsampled_persistence
    >>> ring = torch.zeros(1, 1, 40, 40)
    >>> ring[0, 0, 8:32, 8:32] = 0.9
    >>> ring[0, 0, 14:26, 14:26] = 0.1
    >>> dgm = downsampled_persistence(ring)[0][0]
    >>> dgm.spatial_shape, dgm.betti(0.5)
    ((20, 20), (1, 1))
    """
    return batch_persistence(pool(x, factor, mode), maxdim, connectivity, backend, num_workers)
