"""monai_topo: topological priors for MONAI segmentation with persistent homology.

Every public name is importable from its subpackage (``monai_topo.losses.TopologicalPriorLoss``,
the dotted path to use as ``_target_`` in bundle configs) and, for convenience, from here.
"""

from monai_topo.data import ensure_dataset, myocardium_phantom, placenta_phantom
from monai_topo.engines import SemiSupervisedTrainer
from monai_topo.handlers import BettiError, TopologicalCorrectness, VariationOfInformation
from monai_topo.losses import (
    PersistenceMatchingLoss,
    TopologicalPriorLoss,
    TopologicalWrapperLoss,
)
from monai_topo.metrics import (
    BettiErrorMetric,
    TopologicalCorrectnessMetric,
    VariationOfInformationMetric,
    compute_betti_error,
    compute_topological_correctness,
    compute_variation_of_information,
)
from monai_topo.priors import parse_prior, prior_satisfied
from monai_topo.ph import PersistenceDiagram, batch_persistence, betti_numbers, cubical_persistence, downsampled_persistence
from monai_topo.transforms import (
    KSpaceLineCorruption,
    KSpaceLineCorruptiond,
    TopologicalPostprocess,
    TopologicalPostprocessd,
    refine_with_topology,
)

__version__ = "0.1.0"

__all__ = [
    "BettiError",
    "BettiErrorMetric",
    "KSpaceLineCorruption",
    "KSpaceLineCorruptiond",
    "PersistenceDiagram",
    "PersistenceMatchingLoss",
    "SemiSupervisedTrainer",
    "TopologicalCorrectness",
    "TopologicalCorrectnessMetric",
    "TopologicalPostprocess",
    "TopologicalPostprocessd",
    "TopologicalPriorLoss",
    "TopologicalWrapperLoss",
    "VariationOfInformation",
    "VariationOfInformationMetric",
    "batch_persistence",
    "betti_numbers",
    "compute_betti_error",
    "compute_topological_correctness",
    "compute_variation_of_information",
    "cubical_persistence",
    "downsampled_persistence",
    "ensure_dataset",
    "myocardium_phantom",
    "parse_prior",
    "placenta_phantom",
    "prior_satisfied",
    "refine_with_topology",
]
