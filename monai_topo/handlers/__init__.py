"""Ignite handlers for the topology metrics, for MONAI workflows and bundles (as ``monai.handlers.MeanDice``)."""

from monai_topo.handlers.betti_error import BettiError
from monai_topo.handlers.betti_matching_error import BettiMatchingError
from monai_topo.handlers.cldice import ClDice
from monai_topo.handlers.topological_correctness import TopologicalCorrectness
from monai_topo.handlers.variation_of_information import VariationOfInformation

__all__ = ["BettiError", "BettiMatchingError", "ClDice", "TopologicalCorrectness", "VariationOfInformation"]
