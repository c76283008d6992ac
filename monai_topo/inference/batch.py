"""Batch inference with a bundle over a folder of images: segment, refine with the prior, write, report.

:func:`run_batch` is the job that ``monai-topo infer`` runs; :func:`process_case` does one case.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor, NibabelWriter, decollate_batch, list_data_collate
from monai.metrics import compute_dice
from monai.networks.utils import eval_mode, one_hot
from monai.transforms import Activationsd, AsDiscreted, Compose, Invertd
from monai.utils import MetaKeys
from tqdm import tqdm

import monai_topo
from monai_topo.inference.atomic import atomic_path, remove_temporaries
from monai_topo.inference.bundle import InferenceBundle, load_bundle, read_inference_config, resolve_bundle
from monai_topo.inference.cases import check_output_folder, find_cases, source_folders
from monai_topo.inference.distributed import all_gather, barrier, broadcast, process_group
from monai_topo.inference.readers import add_simpleitk_reader, load_image
from monai_topo.inference.report import merge_rows, read_rows, remove_partials, write_partial, write_report
from monai_topo.metrics import compute_betti_error

OUTPUT_SUFFIX = "_seg.nii.gz"
"""Case ``a`` is written to ``<output>/a_seg.nii.gz``."""

class Segmentation(NamedTuple):
    """What :func:`segment_image` returns."""

    labels: torch.Tensor
    """``(1, *spatial)`` class indices, on the preprocessed grid unless the bundle's post-processing inverts."""
    records: list[dict | None]
    """The refinement record of every item (slice), as ``refine_with_topology`` returns it; None without a prior."""
    priors: list
    """The prior of each item."""
    num_classes: int
    """Classes the labels can take, background included (2 for one output channel)."""
    sliced: bool
    """Whether the image went through the network slice by slice."""


def _default_postprocessing(channels: int) -> Compose:
    """Sigmoid and 0.5 for one output channel, argmax for several: for bundles without ``postprocessing``."""
    if channels == 1:
        return Compose([Activationsd("pred", sigmoid=True), AsDiscreted("pred", threshold=0.5)])
    return Compose([AsDiscreted("pred", argmax=True)])


def segment_image(bundle: InferenceBundle, data: dict) -> Segmentation:
    """Segment one preprocessed item as the bundle's evaluator does: inferer, then post-processing.

    Parameters
    ----------
    bundle : InferenceBundle
        The network, its :class:`~monai_topo.inference.SliceWiseInferer` and post-processing.
    data : dict
        The output of the bundle's preprocessing: ``data["image"]`` is ``(C, *spatial)``.

    Returns
    -------
    Segmentation
        The label map, the per-item records and priors, the number of classes and whether it was sliced.
    """
    batch = list_data_collate([data])
    with eval_mode(bundle.network):  # as MONAI's evaluators run it
        pred = bundle.inferer(batch["image"].to(bundle.device), bundle.network)
    item = {**data, "pred": decollate_batch(pred.cpu(), detach=True)[0]}
    postprocessing = bundle.postprocessing or _default_postprocessing(pred.shape[1])
    labels = postprocessing(item)["pred"]
    record = bundle.inferer.records[0]
    return Segmentation(labels, record["records"], record["priors"], max(2, pred.shape[1]), record["sliced"])


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


def write_segmentation(labels: MetaTensor, path: str | os.PathLike, before_rename: Callable[[], None] | None = None) -> None:
    """Write a ``(1, *spatial)`` segmentation as NIfTI with its metadata's affine, atomically.

    ``before_rename`` runs once the file is complete under its temporary name, before it takes
    its final name (a batch job records the case's report row there).
    """
    writer = NibabelWriter(output_dtype=np.uint8)
    writer.set_data_array(labels, channel_dim=0, squeeze_end_dims=False, spatial_ndim=None)
    # Drop only the channel: squeezing every trailing singleton would write a (H, W, 1) input as (H, W).
    writer.data_obj = writer.data_obj[..., 0]
    writer.set_metadata(labels.meta, resample=False)
    with atomic_path(path) as tmp:
        writer.write(tmp)
        if before_rename is not None:
            before_rename()


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
    commit: Callable[[dict], None] | None = None,
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
    commit : callable, optional
        Called with the finished row once the segmentation is written under its temporary name
        and before it is renamed into place, so that no finished output lacks its report row.

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
        data = bundle.preprocessing({"image": str(image_path)})
        image = data["image"]
        truth = None
        if label_path is not None:
            stage = "reading the label"
            truth = load_image(label_path)
            expected = tuple(int(n) for n in image.meta[MetaKeys.SPATIAL_SHAPE])
            if tuple(truth.shape) != expected:
                raise ValueError(f"label shape {tuple(truth.shape)} differs from the image's {expected}.")
        stage = "segmenting"
        segmentation = segment_image(bundle, data)
        stage = "restoring the input's geometry"
        labels = segmentation.labels.to(torch.uint8)
        if not bundle.inverts:
            labels = restore_geometry(labels, image, bundle.preprocessing)
        if truth is not None:
            stage = "scoring against the label"
            row["dice"], row["betti_error"] = score_segmentation(
                labels, truth, segmentation.num_classes, per_slice=segmentation.sliced
            )
        records = [r for r in segmentation.records if r is not None]  # None: an item without a prior
        row.update(status="ok", message="", items=len(segmentation.records), priors=segmentation.priors)
        if records:
            row.update(
                betti_before=[list(b) for r in records for b in r["betti_before"]],
                betti_after=[list(b) for r in records for b in r["betti_after"]],
                satisfied_before=sum(r["satisfied_before"] for r in records),
                satisfied_after=sum(r["satisfied_after"] for r in records),
                iterations=sum(r["iterations"] for r in records),
            )
        stage = "writing the segmentation"

        def finish() -> None:
            row["seconds"] = time.perf_counter() - start
            if commit is not None:
                commit(row)

        write_segmentation(labels, output_path, before_rename=finish)
    except Exception as error:  # one bad case must not stop the others; the row says what went wrong
        row = {key: row[key] for key in ("case", "image", "label", "output")}
        row.update(status="failed", message=f"{stage}: {_describe(error)}", seconds=time.perf_counter() - start)
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
    is written atomically, and a case's report row is on disk before its output takes its final
    name. A case finished in an earlier run (its row complete and its output readable) is skipped
    unless ``overwrite``, keeping its earlier row; a damaged or unreported earlier output is redone;
    cases that fail are reported and the others go on. Under ``torchrun`` the sorted
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
        Betti prior of every refined item and slice, e.g. ``[1, 1]`` or ``[1, [0, 1]]``; default
        the bundle's (its ``end_slice_prior`` for the end slices of a stack).
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
        Every setup error: unknown bundle, no images, labels named like no image, an output folder
        among the inputs or not writable, an unknown or unavailable device, a malformed prior, a
        checkpoint that is damaged or does not fit, an unreadable earlier report.
    """
    root = resolve_bundle(bundle)
    parser = read_inference_config(root)
    cases = find_cases(source)
    label_paths = find_cases(labels) if labels is not None else {}
    if labels is not None and not set(label_paths) & set(cases):
        raise ValueError(
            f"no label in {os.fspath(labels)!r} is named like an image of {os.fspath(source)!r} (labels: "
            f"{', '.join(list(label_paths)[:3])}...; images: {', '.join(list(cases)[:3])}...); a label must be "
            "named like its image (case.nii.gz for case.nii.gz)."
        )
    read_from = source_folders(source, cases) | (source_folders(labels, label_paths) if labels is not None else set())
    output = check_output_folder(output, read_from)
    package = Path(monai_topo.__file__).resolve().parent  # holds the shipped bundles in a wheel install
    if package in [output, *output.parents]:
        raise ValueError(f"output folder {output} is inside the package folder {package}; write elsewhere.")
    if device is None and "device" in parser:
        device = parser.get_parsed_content("device")
    requested = check_device(device if device is not None else ("cuda:0" if torch.cuda.is_available() else "cpu"))
    with process_group(requested) as (rank, world_size, device):
        model = load_bundle(parser, device, prior=prior, postprocess=postprocess)
        add_simpleitk_reader(model.preprocessing)
        earlier, error = {}, None
        if rank == 0:  # one process creates and probes the folder: two probing it at once race on the probe file
            try:
                make_output_folder(output)
                earlier = read_rows(output)
                remove_temporaries(output)
            except (ValueError, OSError) as exc:  # every process stops with it, none waits for rank 0
                error = exc
        earlier, error = broadcast((earlier, error))  # every process decides from rank 0's reading
        if error is not None:
            raise error
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
            if not overwrite and is_finished(earlier.get(case), output_path):
                row = {
                    "case": case,
                    "status": "skipped",
                    "message": "finished in an earlier run (use --overwrite to redo it)",
                    "output": str(output_path),
                }
            else:
                row = process_case(
                    model, case, image_path, output_path, label_paths.get(case),
                    # The row is on disk before the output takes its final name.
                    commit=lambda done: write_partial(output, rank, [*rows, {**done, "rank": rank}]),
                )
            row["rank"] = rank
            rows.append(row)
            counts[row["status"]] += 1
            bar.set_postfix(counts)
            write_partial(output, rank, rows)
        bar.close()
        done = sorted((row for part in all_gather(rows) for row in part), key=lambda row: row["case"])
        if rank == 0:
            inferer = model.inferer
            run = {
                "bundle": str(root),
                "input": os.fspath(source),
                "labels": None if labels is None else os.fspath(labels),
                "output": str(output),
                "prior": inferer.prior,
                "end_slice_prior": inferer.end_slice_prior,
                "postprocess": inferer.refine,
                "overwrite": overwrite,
                "world_size": world_size,
                "device": str(device),
            }
            write_report(output, merge_rows(earlier, done), run)
            remove_partials(output)
        barrier()
    return done


def is_finished(row: dict | None, output_path: Path) -> bool:
    """Whether an earlier run finished a case: a complete ``ok`` row and an output that reads back whole.

    A 0-byte or truncated output (a disk that filled up, a copy cut short) is not finished, nor an
    output without its row.
    """
    if not row or row.get("status") not in ("ok", "skipped") or row.get("items") is None:
        return False
    if not output_path.is_file():
        return False
    try:
        np.asarray(nib.load(output_path).dataobj)
    except Exception:  # whatever nibabel or gzip raise for a damaged file: redo the case
        return False
    return True


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that this torch build and machine have.

    Raises
    ------
    ValueError
        Not a device name (``"gpu0"``), or CUDA/MPS that is not available.

    Examples
    --------
    >>> from monai_topo.inference.batch import check_device
    >>> check_device("cpu")
    device(type='cpu')
    >>> check_device("gpu0")
    Traceback (most recent call last):
    ...
    ValueError: device 'gpu0' is not a torch device name; use e.g. cpu, cuda or cuda:0.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device name; use e.g. cpu, cuda or cuda:0.") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise ValueError(f"device {device!r} is not available: {build}; use --device cpu.")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} is not available: {torch.cuda.device_count()} CUDA device(s).")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} is not available on this machine; use --device cpu.")
    return parsed


def make_output_folder(output: Path) -> None:
    """Create the output folder and check it can be written.

    Raises
    ------
    ValueError
        A parent is a regular file, or the folder cannot be created or written.
    """
    for parent in [output, *output.parents]:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"output folder {output} cannot be made: {parent} is a file; choose another --output.")
    try:
        output.mkdir(parents=True, exist_ok=True)
        with atomic_path(output / "write-test") as probe:
            probe.write_bytes(b"")
        (output / "write-test").unlink()
    except OSError as error:
        raise ValueError(f"output folder {output} is not writable ({error.strerror}); choose another --output.") from None
