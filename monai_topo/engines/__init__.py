"""Training engines: semi-supervised training with topological priors (Eq. 6 of Clough et al.)."""

from monai_topo.engines.semi_supervised import SemiSupervisedTrainer

__all__ = ["SemiSupervisedTrainer"]
