"""Built-in synthetic data: phantoms with known topology and the bundles' default datasets."""

from monai_topo.data.datasets import DATALIST_NAME, DATASET_KINDS, ensure_dataset, generate_dataset, inference_items
from monai_topo.data.phantoms import MYOCARDIUM_PRIORS, PLACENTA_PRIOR, myocardium_phantom, placenta_phantom
from monai_topo.data.synthetic import noisy_ring

__all__ = [
    "DATALIST_NAME",
    "DATASET_KINDS",
    "MYOCARDIUM_PRIORS",
    "PLACENTA_PRIOR",
    "ensure_dataset",
    "generate_dataset",
    "inference_items",
    "myocardium_phantom",
    "noisy_ring",
    "placenta_phantom",
]
