"""Topology metrics for binarised segmentations, as MONAI cumulative metrics.

:class:`BettiErrorMetric` and :class:`TopologicalCorrectnessMetric` compare Betti numbers with a
ground truth or, where none exists, with a Betti prior; :class:`VariationOfInformationMetric`
compares the partitions of the image. Each wraps a plain ``compute_*`` function.
"""

from monai_topo.metrics.betti_error import BettiErrorMetric, compute_betti_error
from monai_topo.metrics.betti_matching_error import BettiMatchingErrorMetric, compute_betti_matching_error
from monai_topo.metrics.cldice import ClDiceMetric, compute_cldice
from monai_topo.metrics.topological_correctness import (
    TopologicalCorrectnessMetric,
    compute_topological_correctness,
)
from monai_topo.metrics.variation_of_information import (
    VariationOfInformationMetric,
    compute_variation_of_information,
)

__all__ = [
    "BettiMatchingErrorMetric",
    "ClDiceMetric",
    "compute_betti_matching_error",
    "compute_cldice",
    "BettiErrorMetric",
    "TopologicalCorrectnessMetric",
    "VariationOfInformationMetric",
    "compute_betti_error",
    "compute_topological_correctness",
    "compute_variation_of_information",
]
