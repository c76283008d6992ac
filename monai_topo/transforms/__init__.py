"""MONAI transforms of monai_topo: test-time topological refinement (Eq. 5) and k-space line corruption."""

from monai_topo.transforms.kspace import (
    KSpaceLineCorruption,
    KSpaceLineCorruptiond,
    apply_kspace_line_mask,
    corrupt_kspace_lines,
    kspace_line_mask,
)
from monai_topo.transforms.postprocess import (
    RECORD_KEY,
    TopologicalPostprocess,
    TopologicalPostprocessd,
    refine_with_topology,
)

__all__ = [
    "KSpaceLineCorruption",
    "KSpaceLineCorruptiond",
    "RECORD_KEY",
    "TopologicalPostprocess",
    "TopologicalPostprocessd",
    "apply_kspace_line_mask",
    "corrupt_kspace_lines",
    "kspace_line_mask",
    "refine_with_topology",
]
