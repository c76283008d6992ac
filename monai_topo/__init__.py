"""monai_topo: topological priors for MONAI segmentation with persistent homology."""

from monai_topo.ph import PersistenceDiagram, batch_persistence, betti_numbers, cubical_persistence

__version__ = "0.1.0"

__all__ = ["PersistenceDiagram", "batch_persistence", "betti_numbers", "cubical_persistence"]
