"""MONAI transforms of monai_topo: test-time topological refinement (Eq. 5), k-space line corruption and a
label-free, network-localised field of view."""

from monai_topo.transforms.kspace import (
    KSpaceLineCorruption,
    KSpaceLineCorruptiond,
    apply_kspace_line_mask,
    corrupt_kspace_lines,
    kspace_line_mask,
)
from monai_topo.transforms.localise import LocalisedCrop, LocalisedCropd, locate_foreground
from monai_topo.transforms.postprocess import (
    RECORD_KEY,
    TopologicalPostprocess,
    TopologicalPostprocessd,
    refine_with_topology,
)

__all__ = [
    "KSpaceLineCorruption",
    "KSpaceLineCorruptiond",
    "LocalisedCrop",
    "LocalisedCropd",
    "RECORD_KEY",
    "TopologicalPostprocess",
    "TopologicalPostprocessd",
    "apply_kspace_line_mask",
    "corrupt_kspace_lines",
    "kspace_line_mask",
    "locate_foreground",
    "refine_with_topology",
]
