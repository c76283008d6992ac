"""Built-in datasets: phantoms written as NIfTI files with a decathlon-style ``datalist.json``.

The bundles' data when asked for (``generate_synthetic``): when ``dataset_dir`` holds no
``datalist.json``, :func:`ensure_dataset` generates one there, so that training, inference and
evaluation run offline on a fresh machine.
Every file is written under a temporary name and renamed, and the datalist is written last, so an
interrupted or concurrent generation (e.g. every rank of a ``torchrun`` job) never leaves a dataset
that looks finished but is not.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data import NibabelWriter, load_decathlon_datalist

from monai_topo.data.phantoms import MYOCARDIUM_PRIORS, PLACENTA_PRIOR, myocardium_phantom, placenta_phantom
from monai_topo.transforms.kspace import corrupt_kspace_lines
from monai_topo.validation import check_int, check_number, check_shape

__all__ = ["DATALIST_NAME", "DATASET_KINDS", "ensure_dataset", "generate_dataset", "inference_items"]

DATALIST_NAME = "datalist.json"
DATASET_KINDS = ("myocardium", "placenta")
SPLITS = ("training", "unlabelled", "validation", "test")
# The myocardium paper zeroed 20 of 80 k-space lines and kept the middle 8; the default keeps that fraction.
MYOCARDIUM_LINE_FRACTION = 0.25
MYOCARDIUM_KEEP_CENTRE = 8
DEFAULT_SHAPES = {"myocardium": (64, 64), "placenta": (32, 48, 48)}
DEFAULT_SPACINGS = {"myocardium": (1.5, 1.5), "placenta": (1.0, 1.0, 1.0)}


def _write_nifti(array: np.ndarray, path: Path, affine: np.ndarray) -> None:
    """Write ``array`` (spatial only) to ``path`` through MONAI's writer, atomically."""
    writer = NibabelWriter(output_dtype=array.dtype)
    writer.set_data_array(array, channel_dim=None)
    # Not set_metadata(): in MONAI 1.6.1 its no-op resampling raises a TypeError on 2D arrays.
    writer.affine = affine
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name[:-len('.nii.gz')]}.", suffix=".nii.gz", dir=path.parent)
    os.close(handle)
    try:
        writer.write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _write_json(data: dict, path: Path) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w") as stream:
        json.dump(data, stream, indent=2)
    os.replace(temporary, path)


def _check_kind(kind) -> str:
    if not isinstance(kind, str) or kind not in DATASET_KINDS:
        raise ValueError(f"kind must be one of {DATASET_KINDS}, got kind={kind!r}.")
    return kind


def _check_folder(dataset_dir) -> Path:
    if not isinstance(dataset_dir, (str, os.PathLike)):
        raise TypeError(f"dataset_dir must be a str or path, got {type(dataset_dir).__name__}.")
    root = Path(dataset_dir)
    if root.exists() and not root.is_dir():
        raise ValueError(f"dataset_dir={str(root)!r} is a file, not a folder; give a folder to write the dataset in.")
    return root


def generate_dataset(
    kind: str,
    dataset_dir: str | os.PathLike,
    n_train: int = 20,
    n_unlabelled: int = 40,
    n_val: int = 8,
    n_test: int = 8,
    m_lines: int | None = None,
    seed: int = 0,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    apical_fraction: float = 0.0,
) -> str:
    """Generate a phantom dataset as NIfTI files with a decathlon-style datalist.

    Writes ``images/<split>_<i>.nii.gz`` (and ``labels/...`` except for unlabelled items) and
    ``datalist.json`` with the lists ``training``, ``unlabelled``, ``validation`` and ``test``,
    readable with :func:`monai.data.load_decathlon_datalist`. Every item carries its topological prior
    under ``"prior"`` (Betti numbers). Item ``i`` of split ``s`` (0 to 3 in the order above) is drawn
    with ``rng=numpy.random.default_rng([seed, s, i])``, so changing one count leaves the other items
    unchanged.

    Parameters
    ----------
    kind : {"myocardium", "placenta"}
        ``"myocardium"``: 2D short-axis slices (:func:`~monai_topo.data.myocardium_phantom`) corrupted
        by zeroing ``m_lines`` horizontal k-space lines, the middle 8 kept (as in the paper), prior
        ``(1, 1)``. ``"placenta"``: 3D ultrasound-like volumes
        (:func:`~monai_topo.data.placenta_phantom`), prior ``(1, 0, 0)``.
    dataset_dir : str or path-like
        Output folder (created if needed); existing files of the same names are replaced.
    n_train, n_unlabelled, n_val, n_test : int
        Number of items in each split.
    m_lines : int or None
        Number of k-space lines zeroed in each cardiac image; None for a quarter of the lines (the
        paper's 20 of 80). Must be None for ``"placenta"`` (ultrasound has no k-space).
    seed : int
        Seed of the whole dataset.
    shape : sequence of int or None
        Image shape: ``(S, S)`` for myocardium (square), ``(D, H, W)`` for placenta. None for
        ``(64, 64)`` and ``(32, 48, 48)``, small enough for a bundle to train in minutes on 2 CPU cores.
    spacing : sequence of float or None
        Voxel size in mm written in the affine; None for 1.5 mm (myocardium) and 1 mm (placenta).
    apical_fraction : float
        Myocardium only: fraction of slices drawn apical (a disc, prior ``(1, 0)``).

    Returns
    -------
    str
        Path of the written ``datalist.json``.

    Examples
    --------
    >>> import tempfile
    >>> from monai.data import load_decathlon_datalist
    >>> from monai_topo.data import generate_dataset
    >>> folder = tempfile.mkdtemp()
    >>> datalist = generate_dataset("myocardium", folder, n_train=2, n_unlabelled=1, n_val=1, n_test=1)
    >>> items = load_decathlon_datalist(datalist, data_list_key="training")
    >>> len(items), sorted(items[0]), items[0]["prior"]
    (2, ['image', 'label', 'prior'], [1, 1])
    """
    kind = _check_kind(kind)
    root = _check_folder(dataset_dir)
    counts = dict(zip(SPLITS, (check_int(v, n, minimum=0) for n, v in zip(
        ("n_train", "n_unlabelled", "n_val", "n_test"), (n_train, n_unlabelled, n_val, n_test)))))
    seed = check_int(seed, "seed", minimum=0)
    ndim = len(DEFAULT_SHAPES[kind])
    # the phantoms' smallest sides: 32 pixels (myocardium), 24 voxels (placenta)
    shape = DEFAULT_SHAPES[kind] if shape is None else check_shape(shape, "shape", (ndim,), minimum=32 if ndim == 2 else 24)
    if spacing is None:
        spacing = DEFAULT_SPACINGS[kind]
    elif isinstance(spacing, (str, bytes)) or not isinstance(spacing, Sequence) or len(spacing) != ndim:
        raise ValueError(f"spacing must hold {ndim} positive values (mm) for {kind}, got spacing={spacing!r}.")
    spacing = tuple(check_number(v, f"spacing[{i}]", 0) for i, v in enumerate(spacing))
    if min(spacing) <= 0:
        raise ValueError(f"spacing must hold {ndim} positive values (mm) for {kind}, got spacing={spacing}.")
    apical_fraction = check_number(apical_fraction, "apical_fraction", 0, 1)
    if kind == "myocardium":
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"shape must be square (S, S) for myocardium, got shape={shape}.")
        if m_lines is None:
            m_lines = round(MYOCARDIUM_LINE_FRACTION * shape[0])
        if check_int(m_lines, "m_lines", minimum=0) > shape[0] - MYOCARDIUM_KEEP_CENTRE:
            raise ValueError(f"m_lines must be at most {shape[0] - MYOCARDIUM_KEEP_CENTRE} (the {shape[0]} lines less "
                             f"the {MYOCARDIUM_KEEP_CENTRE} central ones), got m_lines={m_lines}.")
    else:
        if m_lines is not None:
            raise ValueError(f"m_lines applies to the k-space of MRI (myocardium) only, got m_lines={m_lines!r} "
                             "for placenta.")
        if apical_fraction:
            raise ValueError(f"apical_fraction applies to myocardium only, got {apical_fraction!r} for placenta.")

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    affine = np.diag([*spacing, *([1.0] * (4 - len(spacing)))])
    datalist: dict = {
        "name": f"monai_topo synthetic {kind}",
        "description": f"{kind} phantoms generated by monai_topo.data.generate_dataset",
        "kind": kind,
        "seed": seed,
        "shape": list(shape),
        "spacing": list(spacing),
        "m_lines": m_lines,
    }
    for split_index, split in enumerate(SPLITS):
        items = []
        for i in range(counts[split]):
            rng = np.random.default_rng([seed, split_index, i])
            name = f"{split}_{i:03d}.nii.gz"
            if kind == "myocardium":
                apical = bool(np.random.default_rng([seed, split_index, i, 1]).random() < apical_fraction)
                image, label = myocardium_phantom(shape[0], rng=rng, apical=apical)
                image = corrupt_kspace_lines(image[None], m_lines, keep_centre=MYOCARDIUM_KEEP_CENTRE, rng=rng)[0]
                prior = MYOCARDIUM_PRIORS["apical" if apical else "ring"]
            else:
                image, label = placenta_phantom(shape, rng=rng)
                prior = PLACENTA_PRIOR
            _write_nifti(image, root / "images" / name, affine)
            item = {"image": f"images/{name}", "prior": list(prior)}
            if split != "unlabelled":
                _write_nifti(label, root / "labels" / name, affine)
                item["label"] = f"labels/{name}"
            items.append(item)
        datalist[split] = items
    datalist["numTraining"] = counts["training"]
    datalist["numTest"] = counts["test"]
    path = root / DATALIST_NAME
    _write_json(datalist, path)
    return str(path)


def ensure_dataset(
    dataset_dir: str | os.PathLike, kind: str = "myocardium", generate_synthetic: bool = False, **kwargs
) -> str:
    """Return the datalist of ``dataset_dir``; generate the phantom dataset there only when asked.

    A folder that already holds a ``datalist.json`` (generated earlier, or real data) is left
    untouched. Without one, phantoms are generated only with ``generate_synthetic=True`` (the
    bundles' ``generate_synthetic`` id, ``--generate_synthetic True`` on the ``monai.bundle run``
    command line); otherwise a mistyped ``dataset_dir`` is an error rather than a folder silently
    filled with phantoms.

    Parameters
    ----------
    dataset_dir : str or path-like
        Data folder.
    kind : {"myocardium", "placenta"}
        Phantom kind to generate when there is no datalist.
    generate_synthetic : bool
        Generate the phantoms when ``dataset_dir`` has no datalist.
    **kwargs
        Passed to :func:`generate_dataset` (counts, ``m_lines``, ``seed``, ``shape``, ...).

    Returns
    -------
    str
        Path of ``dataset_dir/datalist.json``.

    Raises
    ------
    FileNotFoundError
        No datalist and ``generate_synthetic`` is False.

    Examples
    --------
    In a bundle config:
    ``"datalist": "$monai_topo.data.ensure_dataset(@dataset_dir, 'myocardium', generate_synthetic=@generate_synthetic)"``.

    >>> import tempfile
    >>> from monai_topo.data import ensure_dataset
    >>> folder = tempfile.mkdtemp()
    >>> first = ensure_dataset(folder, "placenta", True, n_train=1, n_unlabelled=0, n_val=0, n_test=0)
    >>> ensure_dataset(folder, "placenta") == first
    True
    """
    _check_kind(kind)
    path = _check_folder(dataset_dir) / DATALIST_NAME
    if path.is_file():
        return str(path)
    if not generate_synthetic:
        raise FileNotFoundError(
            f"{path} not found: point dataset_dir at a folder holding a {DATALIST_NAME}, or set generate_synthetic "
            f"to true (monai.bundle run ... --generate_synthetic True) to generate {kind} phantoms there."
        )
    return generate_dataset(kind, dataset_dir, **kwargs)


def inference_items(
    input_dir: str | os.PathLike | None,
    dataset_dir: str | os.PathLike,
    kind: str = "myocardium",
    split: str = "test",
    generate_synthetic: bool = False,
    **kwargs,
) -> list[dict]:
    """The ``{"image": path}`` items a bundle's inference runs on: the images of ``input_dir`` when
    given (nothing else is read or written), else the ``split`` of ``dataset_dir``'s datalist
    (see :func:`ensure_dataset` for ``generate_synthetic`` and ``kwargs``).

    One function rather than a conditional expression in the config: MONAI resolves every
    reference of an expression, also in the branch not taken, which would generate phantoms
    for an ``input_dir`` run.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from monai_topo.data import inference_items
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "b.nii.gz").write_bytes(b""), (folder / "a.mha").write_bytes(b"")
    >>> [pathlib.Path(item["image"]).name for item in inference_items(folder, "/no/such/dataset")]
    ['a.mha', 'b.nii.gz']
    """
    if input_dir:
        from monai_topo.inference.cases import find_cases  # the file types monai-topo infer reads

        return [{"image": str(path)} for path in find_cases(input_dir).values()]
    datalist = ensure_dataset(dataset_dir, kind, generate_synthetic, **kwargs)
    return [{"image": item["image"]} for item in load_decathlon_datalist(datalist, data_list_key=split)]
