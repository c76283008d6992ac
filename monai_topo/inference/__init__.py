"""Batch inference with monai_topo bundles: folders of NIfTI (and SimpleITK) images in, segmentations
and a per-case report out, resumable, atomic, and split across processes under ``torchrun``."""

from monai_topo.inference.batch import process_case, run_batch, segment_image
from monai_topo.inference.bundle import (
    InferenceBundle,
    copy_bundle,
    list_bundles,
    load_bundle,
    read_inference_config,
    resolve_bundle,
)
from monai_topo.inference.label_betti import label_betti_table
from monai_topo.inference.readers import SimpleITKReader, load_image
from monai_topo.inference.slicewise import SliceWiseInferer, slice_priors

__all__ = [
    "InferenceBundle",
    "SimpleITKReader",
    "SliceWiseInferer",
    "copy_bundle",
    "label_betti_table",
    "list_bundles",
    "load_bundle",
    "load_image",
    "process_case",
    "read_inference_config",
    "resolve_bundle",
    "run_batch",
    "segment_image",
    "slice_priors",
]
