"""monai_topo: topological priors for MONAI segmentation with persistent homology.

Every public name is importable from its subpackage (``monai_topo.losses.TopologicalPriorLoss``,
the dotted path to use as ``_target_`` in bundle configs) and, for convenience, from here.
"""

import importlib

# Name -> subpackage. Loaded on first use (PEP 562), so ``import monai_topo.ph`` loads neither
# ignite nor the training engines; the subpackage paths stay the ``_target_`` of bundle configs.
_EXPORTS = {
    "ensure_dataset": "data",
    "myocardium_phantom": "data",
    "placenta_phantom": "data",
    "SemiSupervisedTrainer": "engines",
    "BettiError": "handlers",
    "TopologicalCorrectness": "handlers",
    "VariationOfInformation": "handlers",
    "PersistenceMatchingLoss": "losses",
    "TopologicalPriorLoss": "losses",
    "TopologicalWrapperLoss": "losses",
    "parse_prior": "priors",
    "prior_satisfied": "priors",
    "BettiErrorMetric": "metrics",
    "TopologicalCorrectnessMetric": "metrics",
    "VariationOfInformationMetric": "metrics",
    "compute_betti_error": "metrics",
    "compute_topological_correctness": "metrics",
    "compute_variation_of_information": "metrics",
    "PersistenceDiagram": "ph",
    "batch_persistence": "ph",
    "betti_numbers": "ph",
    "cubical_persistence": "ph",
    "downsampled_persistence": "ph",
    "KSpaceLineCorruption": "transforms",
    "KSpaceLineCorruptiond": "transforms",
    "TopologicalPostprocess": "transforms",
    "TopologicalPostprocessd": "transforms",
    "refine_with_topology": "transforms",
}


_SUBPACKAGES = ("data", "engines", "handlers", "inference", "losses", "metrics", "ph", "priors", "threads",
                "transforms", "validation")


def __getattr__(name: str):
    if name in _SUBPACKAGES:  # ``import monai_topo`` then ``monai_topo.data.ensure_dataset``, as in bundle configs
        return importlib.import_module(f"monai_topo.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"monai_topo.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'monai_topo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBPACKAGES})


__version__ = "0.1.0"

__all__ = sorted(_EXPORTS)
