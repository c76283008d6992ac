"""Built-in synthetic data: phantoms with known topology, generated on the fly."""

from monai_topo.data.synthetic import noisy_ring

__all__ = ["noisy_ring"]
