"""Training splits from a Sunnybrook-style folder of short-axis cine MRI, with no user code.

A bundle config turns a data folder into the lists its datasets read with one expression,
``"$monai_topo.data.sunnybrook_datalist(@dataset_dir, prior=@prior, ...)"``. Three layouts are read:

1. ``datalist.json`` with ``labelled`` (``image``, ``label``, optionally ``betti``: the Betti numbers
   of the mask) and ``unlabelled`` (``image``) lists, as ``../shared/data/sunnybrook_myo`` has;
2. a decathlon-style ``datalist.json`` with ``training``, ``validation`` and ``unlabelled`` lists
   (e.g. the phantoms of :func:`~monai_topo.data.generate_dataset`);
3. no datalist: ``images/`` and ``labels/`` (a label has its image's file name) and, optionally,
   ``unlabelled/``.

Items are grouped by patient, the start of the file name up to the first ``_``
(``SCD0000101_0059.nii.gz`` is frame 59 of patient ``SCD0000101``), so that whole patients can
be held out (leave-one-patient-out) and never leak into training through their unlabelled frames.
The folder is only read: nothing is written into it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from monai_topo.data.datasets import DATALIST_NAME, ensure_dataset

__all__ = ["IMAGE_SUFFIXES", "patient_of", "sunnybrook_datalist"]

IMAGE_SUFFIXES = (".nii.gz", ".nii")
FRAME_PATTERN = re.compile(r"^(?P<patient>[^_]+)_(?P<frame>\d+)$")


def _stem(path: str | os.PathLike) -> str:
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def patient_of(path: str | os.PathLike) -> str:
    """Patient id of a Sunnybrook-style file: its name up to the first ``_``.

    Examples
    --------
    >>> from monai_topo.data import patient_of
    >>> patient_of("images/SCD0000101_0059.nii.gz")
    'SCD0000101'
    """
    return _stem(path).split("_", 1)[0]


def _slice_location(path: str, phases: int) -> tuple[str, int] | None:
    """``(patient, slice index)`` of a cine frame numbered ``1 .. slices * phases``, else None."""
    match = FRAME_PATTERN.match(_stem(path))
    if match is None:
        return None
    return match["patient"], (int(match["frame"]) - 1) // phases


def _scan_folder(root: Path) -> dict[str, list[dict]]:
    """Layout 3: pair ``images/X`` with ``labels/X``; ``unlabelled/*`` and unpaired images are unlabelled."""
    def files(folder: str) -> list[Path]:
        return sorted(p for p in (root / folder).glob("[!.]*") if p.name.endswith(IMAGE_SUFFIXES)) if (
            root / folder).is_dir() else []

    labels = {p.name: p for p in files("labels")}
    images = files("images")
    return {
        "labelled": [{"image": str(p), "label": str(labels[p.name])} for p in images if p.name in labels],
        "unlabelled": [{"image": str(p)} for p in images if p.name not in labels]
        + [{"image": str(p)} for p in files("unlabelled")],
    }


def _absolute(item: dict, root: Path) -> dict:
    return {k: str(root / v) if k in ("image", "label") and not os.path.isabs(v) else v for k, v in item.items()}


def sunnybrook_datalist(
    dataset_dir: str | os.PathLike,
    prior: Sequence | None = (1, 1),
    exclude_patients: Sequence[str] = (),
    validation_patients: Sequence[str] = (),
    label_betti: Sequence[int] | None = None,
    phases: int | None = 20,
    generate_synthetic: bool = False,
    synthetic_data: dict | None = None,
) -> dict[str, list[dict]]:
    """Read a Sunnybrook-style data folder into ``training``, ``validation`` and ``unlabelled`` lists.

    Parameters
    ----------
    dataset_dir : str or path-like
        The data folder, in one of the three layouts of the module docstring.
    prior : sequence or None
        Betti-number prior put under ``"prior"`` in every unlabelled item that has none of its own
        (the ring ``(1, 1)``); None to add none.
    exclude_patients : sequence of str
        Patients left out of every list (e.g. the test patient of a leave-one-patient-out fold).
    validation_patients : sequence of str
        Patients whose labelled slices go to ``validation`` instead of ``training`` (their
        unlabelled frames are left out). With none, ``validation`` is empty.
    label_betti : sequence of int or None
        Keep only the labelled slices whose listed ``betti`` equals this (e.g. ``[1, 1]`` drops
        Sunnybrook's one mask in three pieces, an annotation artefact); None keeps all.
        Slices without a listed ``betti`` are kept.
    phases : int or None
        Frames per slice location in the cine numbering ``<patient>_<frame>`` (20 in Sunnybrook):
        an unlabelled frame is kept only when a kept labelled frame lies at the same slice location
        (frame ``f`` at location ``(f - 1) // phases``), so the prior is only put on locations whose
        myocardium is known to have it. None keeps all unlabelled frames. Frames not named this
        way, and frames of patients with no labelled frame, are kept.
    generate_synthetic : bool
        When ``dataset_dir`` holds no ``datalist.json``, generate the phantom dataset there
        (:func:`~monai_topo.data.ensure_dataset`) instead of reading ``images/`` and ``labels/`` or
        raising.
    synthetic_data : dict or None
        Keyword arguments of :func:`~monai_topo.data.generate_dataset` for ``generate_synthetic``.

    Returns
    -------
    dict
        ``{"training": [...], "validation": [...], "unlabelled": [...]}``, items with absolute
        ``image`` (and ``label``) paths, ready for MONAI datasets.

    Raises
    ------
    FileNotFoundError
        ``dataset_dir`` holds neither a ``datalist.json`` nor an ``images/`` folder with labels,
        and ``generate_synthetic`` is False.
    ValueError
        No labelled slice is left for training.

    Examples
    --------
    >>> import tempfile
    >>> from monai_topo.data import sunnybrook_datalist
    >>> folder = tempfile.mkdtemp()
    >>> splits = sunnybrook_datalist(folder, generate_synthetic=True, synthetic_data={
    ...     "n_train": 2, "n_unlabelled": 1, "n_val": 1, "n_test": 0, "shape": [32, 32]})
    >>> {name: len(items) for name, items in splits.items()}
    {'training': 2, 'validation': 1, 'unlabelled': 1}
    """
    root = Path(dataset_dir).resolve()
    datalist_path = root / DATALIST_NAME
    if not datalist_path.is_file() and generate_synthetic:
        # Before looking for images/ and labels/: every rank of a torchrun job may be generating them now.
        datalist_path = Path(ensure_dataset(root, "myocardium", generate_synthetic=True, **(synthetic_data or {})))
    if not datalist_path.is_file() and not (root / "labels").is_dir():
        raise FileNotFoundError(
            f"dataset_dir={str(dataset_dir)!r} holds neither a {DATALIST_NAME} nor images/ and labels/ folders. "
            "Point dataset_dir at your data, or set generate_synthetic=True (bundle: --generate_synthetic True) "
            "to train on generated phantoms."
        )
    if datalist_path.is_file():
        listing = json.loads(datalist_path.read_text())
        if "labelled" not in listing and "training" not in listing:
            raise ValueError(f"{datalist_path} has neither a 'labelled' nor a 'training' list.")
    else:
        listing = _scan_folder(root)
    exclude, validation = set(exclude_patients), set(validation_patients)
    labelled = [_absolute(i, root) for i in listing.get("labelled", listing.get("training", []))]
    labelled = [i for i in labelled if patient_of(i["image"]) not in exclude]
    if label_betti is not None:
        labelled = [i for i in labelled if "betti" not in i or list(i["betti"]) == list(label_betti)]
    unlabelled = [_absolute(i, root) for i in listing.get("unlabelled", [])]
    unlabelled = [i for i in unlabelled if patient_of(i["image"]) not in exclude | validation]
    if phases is not None:
        locations = {_slice_location(i["image"], phases) for i in labelled}
        patients = {loc[0] for loc in locations if loc is not None}
        unlabelled = [i for i in unlabelled if (loc := _slice_location(i["image"], phases)) is None
                      or loc[0] not in patients or loc in locations]
    if prior is not None:
        unlabelled = [{"prior": list(prior), **i} for i in unlabelled]
    splits = {
        "training": [i for i in labelled if patient_of(i["image"]) not in validation],
        "validation": [i for i in labelled if patient_of(i["image"]) in validation]
        + [_absolute(i, root) for i in listing.get("validation", [])],
        "unlabelled": unlabelled,
    }
    if not splits["training"]:
        raise ValueError(
            f"No labelled slice left for training in dataset_dir={str(dataset_dir)!r} with "
            f"exclude_patients={sorted(exclude)}, validation_patients={sorted(validation)}, label_betti={label_betti}."
        )
    return splits
