"""Differentiable cubical persistent homology of 2D/3D probability maps.

An array in, a table of bars out: :func:`cubical_persistence` for one image,
:func:`batch_persistence` for a ``(B, C, *spatial)`` batch, :func:`betti_numbers` for masks,
:func:`downsampled_persistence` for a batch pooled first (faster, coarser). The default engine is
the compiled union-find of :mod:`monai_topo.ph.unionfind`, cached where a folder can be written
(see :mod:`monai_topo.ph.numba_cache`).
"""

from monai_topo.ph.numba_cache import configure_numba_cache

# Before anything imports the engine: numba picks its cache folder when a function is defined.
with configure_numba_cache():
    from monai_topo.ph import unionfind  # noqa: F401

from monai_topo.ph.betti import betti_numbers  # noqa: E402
from monai_topo.ph.diagram import PersistenceDiagram  # noqa: E402
from monai_topo.ph.downsample import downsampled_persistence  # noqa: E402
from monai_topo.ph.persistence import (  # noqa: E402
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
