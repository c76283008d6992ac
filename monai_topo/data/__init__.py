"""Data: phantoms with known topology, the bundles' synthetic datasets, and Sunnybrook-style folders."""

from monai_topo.data.datasets import DATALIST_NAME, DATASET_KINDS, ensure_dataset, generate_dataset, inference_items
from monai_topo.data.phantoms import MYOCARDIUM_PRIORS, PLACENTA_PRIOR, myocardium_phantom, placenta_phantom
from monai_topo.data.sunnybrook import patient_of, sunnybrook_datalist
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
    "patient_of",
    "placenta_phantom",
    "sunnybrook_datalist",
]
