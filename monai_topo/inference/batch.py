"""Batch inference with a bundle over a folder of images: segment, refine with the prior, write, report.

:func:`run_batch` is the job that ``monai-topo infer`` runs; :func:`process_case` does one case.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from monai.data import MetaTensor, NibabelWriter
from monai.metrics import compute_dice
from monai.networks.utils import one_hot
from monai.transforms import Invertd
from monai.utils import MetaKeys
from tqdm import tqdm

from monai_topo.inference.atomic import atomic_path, remove_temporaries
from monai_topo.inference.bundle import InferenceBundle, load_bundle, read_inference_config, resolve_bundle
from monai_topo.inference.cases import check_output_folder, find_cases, source_folders
from monai_topo.inference.distributed import all_gather, barrier, process_group
from monai_topo.inference.readers import add_simpleitk_reader, load_image
from monai_topo.inference.report import merge_rows, read_rows, remove_partials, write_partial, write_report
from monai_topo.priors import parse_prior
from monai_topo.metrics import compute_betti_error
from monai_topo.transforms import refine_with_topology

OUTPUT_SUFFIX = "_seg.nii.gz"
"""Case ``a`` is written to ``<output>/a_seg.nii.gz``."""

DEFAULT_THRESHOLD = refine_with_topology.__kwdefaults__["threshold"]


def _label_map(probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """``(1, *spatial)`` uint8 labels: one channel thresholded, several channels by argmax."""
    if probs.shape[0] == 1:
        return (probs >= threshold).to(torch.uint8)
    return probs.argmax(0, keepdim=True).to(torch.uint8)


def _is_sliced(bundle: InferenceBundle, image: torch.Tensor) -> bool:
    """Whether ``image`` (C, *spatial) goes through the network slice by slice along its last axis."""
    spatial_dims = image.ndim - 1
    if spatial_dims == bundle.spatial_dims:
        return False
    if bundle.slice_by_slice and (spatial_dims, bundle.spatial_dims) == (3, 2):
        return True
    raise ValueError(
        f"the preprocessed image has {spatial_dims} spatial dimensions (shape {tuple(image.shape)}), but the "
        f"bundle's network takes {bundle.spatial_dims}"
        + ("" if bundle.slice_by_slice else " and the bundle does not set slice_by_slice")
        + "."
    )


class Segmentation(NamedTuple):
    """What :func:`segment_image` returns."""

    labels: torch.Tensor
    """uint8 ``(1, *spatial)``: the thresholded probability (one output channel) or the argmax."""
    records: list[dict]
    """The refinement record of every item (slice), as ``refine_with_topology`` returns it."""
    priors: list
    """The prior each item was refined with."""
    num_classes: int
    """Classes the labels can take, background included (2 for one output channel)."""
    sliced: bool
    """Whether the image went through a 2D network slice by slice."""


def item_priors(bundle: InferenceBundle, count: int, sliced: bool, prior=None) -> list:
    """The prior of each of ``count`` items: ``prior`` for all when given, else the bundle's
    ``slice_priors(count)`` for a sliced volume when the bundle has it, else the bundle's prior."""
    if prior is not None:
        return [prior] * count
    if sliced and bundle.slice_priors is not None:
        priors = list(bundle.slice_priors(count))
        if len(priors) != count:
            raise ValueError(f"the bundle's slice_priors gave {len(priors)} priors for {count} slices.")
        return priors
    return [bundle.prior] * count


def segment_image(
    bundle: InferenceBundle, image: torch.Tensor, prior=None, postprocess: bool | None = None
) -> Segmentation:
    """Segment one network-ready image, refining each item with the prior when ``postprocess``.

    Parameters
    ----------
    bundle : InferenceBundle
        The network, inferer and refinement settings.
    image : torch.Tensor, shape (C, *spatial)
        The preprocessed image. A 3D image for a 2D slice-by-slice bundle is split along its last
        axis and every slice is refined on its own.
    prior : sequence, optional
        Betti prior of every item (every slice); default :func:`item_priors` of the bundle.
    postprocess : bool, optional
        Refine with :func:`monai_topo.transforms.refine_with_topology` (Eq. 5), or keep the
        network's prediction; default the bundle's ``postprocess``.

    Returns
    -------
    Segmentation
        The label map, the per-item records and priors, the number of classes and whether it was sliced.
    """
    sliced = _is_sliced(bundle, image)
    plain = image.as_tensor() if isinstance(image, MetaTensor) else image
    items = plain.unbind(-1) if sliced else [plain]
    priors = item_priors(bundle, len(items), sliced, prior)
    options = {"inferer": bundle.inferer, **bundle.refine_args}
    if not (bundle.postprocess if postprocess is None else postprocess):
        # Zero steps: the network's own prediction, with the Betti numbers refinement would report.
        options["iterations"] = 0
    threshold = options.get("threshold", DEFAULT_THRESHOLD)
    maps, records = [], []
    for item, item_prior in zip(items, priors):
        probs, record = refine_with_topology(bundle.network, item, item_prior, **options)
        maps.append(_label_map(probs, threshold).cpu())
        records.append(record)
    labels = torch.stack(maps, -1) if sliced else maps[0]
    return Segmentation(labels, records, priors, max(2, probs.shape[0]), sliced)


def restore_geometry(labels: torch.Tensor, image: MetaTensor, preprocessing) -> MetaTensor:
    """Map a segmentation of the preprocessed ``image`` back onto the input's grid and affine.

    Undoes the invertible spatial transforms of ``preprocessing`` (resampling, orientation,
    padding, cropping) with MONAI's :class:`~monai.transforms.Invertd`, nearest-neighbour.
    """
    # Invertd gives the MetaTensor the image's metadata and transform trace, then inverts.
    if not image.applied_operations:  # nothing to undo
        return MetaTensor(labels, meta=image.meta).to(torch.uint8)
    inverted = Invertd("pred", transform=preprocessing, orig_keys="image", nearest_interp=True)(
        {"image": image, "pred": MetaTensor(labels)}
    )["pred"]
    return inverted.to(torch.uint8)


def score_segmentation(
    labels: torch.Tensor, truth, num_classes: int, per_slice: bool
) -> tuple[float, float]:
    """Dice and Betti number error of a segmentation against a label map, foreground classes averaged.

    Parameters
    ----------
    labels : torch.Tensor, shape (1, *spatial)
        The segmentation (class indices).
    truth : array-like, shape (*spatial)
        The label map; with ``num_classes == 2`` every non-zero value is foreground.
    num_classes : int
        Classes including the background.
    per_slice : bool
        Betti error of each 2D slice along the last axis, averaged (for slice-by-slice bundles),
        instead of that of the whole image.

    Returns
    -------
    tuple of float
        ``(dice, betti_error)``, NaN where the truth has no foreground.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.inference.batch import score_segmentation
    >>> truth = torch.zeros(7, 7, dtype=torch.uint8)
    >>> truth[1:6, 1:6] = 1
    >>> truth[3, 3] = 0  # a ring
    >>> pred = torch.zeros(1, 7, 7, dtype=torch.uint8)
    >>> pred[0, 1:6, 1:6] = 1  # a disc
    >>> [round(v, 3) for v in score_segmentation(pred, truth, 2, per_slice=False)]
    [0.98, 1.0]
    """
    truth = torch.as_tensor(np.asarray(truth))
    if truth.is_floating_point() and not bool((truth == truth.round()).all()):
        raise ValueError("the label must hold whole class numbers, got fractional values.")
    truth = truth.long()
    if num_classes == 2:
        truth = (truth > 0).long()
    elif truth.min() < 0 or truth.max() >= num_classes:
        raise ValueError(
            f"the label holds values {truth.min().item()}..{truth.max().item()}, outside the network's "
            f"{num_classes} classes."
        )
    pred_1h = one_hot(labels[None].long(), num_classes)
    truth_1h = one_hot(truth[None, None], num_classes)
    dice = compute_dice(pred_1h, truth_1h, include_background=False)
    if per_slice:
        pred_1h, truth_1h = pred_1h[0].movedim(-1, 0), truth_1h[0].movedim(-1, 0)
    betti_error = compute_betti_error(pred_1h, truth_1h, include_background=False)[..., -1]
    return float(torch.nanmean(dice.float())), float(torch.nanmean(betti_error))


def write_segmentation(labels: MetaTensor, path: str | os.PathLike) -> None:
    """Write a ``(1, *spatial)`` segmentation as NIfTI with its metadata's affine, atomically."""
    writer = NibabelWriter(output_dtype=np.uint8)
    writer.set_data_array(labels, channel_dim=0, squeeze_end_dims=False, spatial_ndim=None)
    # Drop only the channel: squeezing every trailing singleton would write a (H, W, 1) input as (H, W).
    writer.data_obj = writer.data_obj[..., 0]
    writer.set_metadata(labels.meta, resample=False)
    with atomic_path(path) as tmp:
        writer.write(tmp)


def _describe(error: BaseException) -> str:
    """The root cause of an error in one line (MONAI wraps transform errors in RuntimeErrors)."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def process_case(
    bundle: InferenceBundle,
    case: str,
    image_path: Path,
    output_path: Path,
    label_path: Path | None = None,
    prior=None,
    postprocess: bool | None = None,
) -> dict:
    """Run one case end to end and return its report row; never raises for a bad case.

    Parameters
    ----------
    bundle : InferenceBundle
        What to run.
    case : str
        The case name.
    image_path, output_path : Path
        Input image and the segmentation to write (only once everything else succeeded).
    label_path : Path, optional
        A label map on the input's grid, for Dice and Betti error.
    prior, postprocess
        As in :func:`segment_image`.

    Returns
    -------
    dict
        The row (see :data:`monai_topo.inference.report.COLUMNS`): status ``"ok"``, or ``"failed"``
        with a message naming the stage and the cause.
    """
    start = time.perf_counter()
    row: dict = {
        "case": case,
        "image": str(image_path),
        "label": None if label_path is None else str(label_path),
        "output": str(output_path),
    }
    stage = "reading the image"
    try:
        image = bundle.preprocessing({"image": str(image_path)})["image"]
        truth = None
        if label_path is not None:
            stage = "reading the label"
            truth = load_image(label_path)
            expected = tuple(int(n) for n in image.meta[MetaKeys.SPATIAL_SHAPE])
            if tuple(truth.shape) != expected:
                raise ValueError(f"label shape {tuple(truth.shape)} differs from the image's {expected}.")
        stage = "segmenting"
        segmentation = segment_image(bundle, image, prior, postprocess)
        stage = "restoring the input's geometry"
        labels = restore_geometry(segmentation.labels, image, bundle.preprocessing)
        if truth is not None:
            stage = "scoring against the label"
            row["dice"], row["betti_error"] = score_segmentation(
                labels, truth, segmentation.num_classes, per_slice=segmentation.sliced
            )
        stage = "writing the segmentation"
        write_segmentation(labels, output_path)
    except Exception as error:  # one bad case must not stop the others; the row says what went wrong
        row.update(status="failed", message=f"{stage}: {_describe(error)}")
    else:
        records = segmentation.records
        row.update(
            status="ok",
            message="",
            items=len(records),
            priors=segmentation.priors,
            betti_before=[list(b) for r in records for b in r["betti_before"]],
            betti_after=[list(b) for r in records for b in r["betti_after"]],
            satisfied_before=sum(r["satisfied_before"] for r in records),
            satisfied_after=sum(r["satisfied_after"] for r in records),
            iterations=sum(r["iterations"] for r in records),
        )
    row["seconds"] = time.perf_counter() - start
    return row


def run_batch(
    bundle: str | os.PathLike,
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    prior=None,
    postprocess: bool | None = None,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> list[dict]:
    """Segment every image of a folder (or glob) with a bundle, resumably, on one or many processes.

    Writes ``<output>/<case>_seg.nii.gz`` (the input's grid and affine) for every case that
    succeeds, and ``<output>/inference_report.csv`` / ``.json`` with one row per case. Every file
    is written atomically. A case whose output exists is skipped unless ``overwrite``, keeping its
    earlier row; cases that fail are reported and the others go on. Under ``torchrun`` the sorted
    cases are dealt round-robin to the processes and rank 0 merges the rows.

    Parameters
    ----------
    bundle : str or os.PathLike
        Bundle folder or name (see :func:`monai_topo.inference.bundle.resolve_bundle`).
    source : str or os.PathLike
        Folder of images, or a glob pattern.
    output : str or os.PathLike
        Output folder; must not be, or be inside, a folder the inputs or labels come from.
    labels : str or os.PathLike, optional
        Folder or glob of label maps, matched to images by case name, for Dice and Betti error.
    prior : sequence, optional
        Betti prior of each refined item, e.g. ``[1, 1]`` or ``[1, [0, 1]]``; default the bundle's
        (per slice from its ``slice_priors`` where it has them).
    postprocess : bool, optional
        Whether to refine with the prior (Eq. 5); default the bundle's ``postprocess``.
    overwrite : bool
        Redo cases whose output exists.
    device : str or torch.device, optional
        Overrides the bundle's device (under ``torchrun`` with CUDA, each process takes ``cuda:LOCAL_RANK``).
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    list of dict
        The rows of this run's cases (all processes), sorted by case; ``row["status"]`` is
        ``"ok"``, ``"failed"`` or ``"skipped"``.

    Raises
    ------
    ValueError
        Unknown bundle, no images, an output folder among the inputs, or a malformed prior.
    """
    root = resolve_bundle(bundle)
    parser = read_inference_config(root)
    cases = find_cases(source)
    label_paths = find_cases(labels) if labels is not None else {}
    read_from = source_folders(source, cases) | (source_folders(labels, label_paths) if labels is not None else set())
    output = check_output_folder(output, read_from)
    requested = torch.device(device if device is not None else parser.get_parsed_content("device"))
    with process_group(requested) as (rank, world_size, device):
        model = load_bundle(parser, device)
        if prior is not None:
            parse_prior(prior, model.spatial_dims, name="prior")
        postprocess = model.postprocess if postprocess is None else postprocess
        add_simpleitk_reader(model.preprocessing)
        output.mkdir(parents=True, exist_ok=True)
        earlier = {}
        if rank == 0:
            earlier = read_rows(output)
            remove_temporaries(output)
        # Nobody writes before rank 0 has read the earlier rows and cleared stale temporary files.
        barrier()
        rows: list[dict] = []
        counts: Counter = Counter()
        mine = list(cases.items())[rank::world_size]
        bar = tqdm(
            mine,
            desc="infer" if world_size == 1 else f"infer rank {rank}",
            unit="case",
            disable=not progress,
            position=rank if world_size > 1 else None,
        )
        for case, image_path in bar:
            output_path = output / f"{case}{OUTPUT_SUFFIX}"
            if output_path.exists() and not overwrite:
                row = {
                    "case": case,
                    "status": "skipped",
                    "message": "finished in an earlier run (use --overwrite to redo it)",
                    "output": str(output_path),
                }
            else:
                row = process_case(model, case, image_path, output_path, label_paths.get(case), prior, postprocess)
            row["rank"] = rank
            rows.append(row)
            counts[row["status"]] += 1
            bar.set_postfix(counts)
            write_partial(output, rank, rows)
        bar.close()
        done = sorted((row for part in all_gather(rows) for row in part), key=lambda row: row["case"])
        if rank == 0:
            run = {
                "bundle": str(root),
                "input": os.fspath(source),
                "labels": None if labels is None else os.fspath(labels),
                "output": str(output),
                "prior": model.prior if prior is None else prior,
                "slice_priors": prior is None and model.slice_priors is not None,
                "postprocess": postprocess,
                "overwrite": overwrite,
                "world_size": world_size,
                "device": str(device),
            }
            write_report(output, merge_rows(earlier, done), run)
            remove_partials(output)
        barrier()
    return done
