"""Differentiable cubical persistent homology of 2D/3D probability maps.

An array in, a table of bars out: :func:`cubical_persistence` for one image,
:func:`batch_persistence` for a ``(B, C, *spatial)`` batch, :func:`betti_numbers` for masks,
:func:`downsampled_persistence` for a batch pooled first (faster, coarser). The default engine is
the compiled union-find of :mod:`monai_topo.ph.unionfind`.
"""

from monai_topo.ph.betti import betti_numbers
from monai_topo.ph.diagram import PersistenceDiagram
from monai_topo.ph.downsample import downsampled_persistence
from monai_topo.ph.persistence import (
    CONNECTIVITIES,
    DEFAULT_CONNECTIVITY,
    batch_persistence,
    check_connectivity,
    cubical_persistence,
)

__all__ = [
    "CONNECTIVITIES",
    "DEFAULT_CONNECTIVITY",
    "PersistenceDiagram",
    "batch_persistence",
    "betti_numbers",
    "check_connectivity",
    "cubical_persistence",
    "downsampled_persistence",
]
