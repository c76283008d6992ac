"""MONAI transforms of monai_topo: k-space line corruption (Clough et al.)."""

from monai_topo.transforms.kspace import (
    KSpaceLineCorruption,
    KSpaceLineCorruptiond,
    apply_kspace_line_mask,
    corrupt_kspace_lines,
    kspace_line_mask,
)

__all__ = [
    "KSpaceLineCorruption",
    "KSpaceLineCorruptiond",
    "apply_kspace_line_mask",
    "corrupt_kspace_lines",
    "kspace_line_mask",
]
