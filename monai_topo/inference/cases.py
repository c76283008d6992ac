"""Which files a batch job reads: images found in a folder or by a glob pattern, named by case."""

from __future__ import annotations

import glob
import os
from pathlib import Path

FOLDER_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
"""Suffixes of the files a folder search picks up (a glob pattern picks up whatever it matches)."""


def case_name(path: str | os.PathLike) -> str:
    """The case a file holds: its name without the image suffix (``"a.nii.gz"`` -> ``"a"``).

    Examples
    --------
    >>> from monai_topo.inference.cases import case_name
    >>> case_name("/data/SCD0000101_0059.nii.gz"), case_name("b.mha"), case_name("c.img.gz")
    ('SCD0000101_0059', 'b', 'c')
    """
    name = Path(path).name
    for suffix in FOLDER_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    stem = name[:-3] if name.lower().endswith(".gz") else name
    return Path(stem).stem


def find_cases(source: str | os.PathLike) -> dict[str, Path]:
    """Images of a folder (by :data:`FOLDER_SUFFIXES`, not recursive, hidden files left out) or of a glob.

    Parameters
    ----------
    source : str or os.PathLike
        A folder, or a glob pattern such as ``"scans/*.nii.gz"`` or ``"scans/**/*.mha"``.

    Returns
    -------
    dict
        Case name to absolute path, sorted by case name (so every process of a distributed run
        sees the same order).

    Raises
    ------
    ValueError
        Nothing matches, or two files map to one case name (``a.nii`` and ``a.nii.gz``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from monai_topo.inference.cases import find_cases
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("b.nii.gz", "a.mha", "notes.txt", ".hidden.nii.gz"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> list(find_cases(folder))
    ['a', 'b']
    """
    source = os.fspath(source)
    folder = Path(source).expanduser()
    if folder.is_dir():
        paths = [
            p for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(FOLDER_SUFFIXES)
        ]
    else:
        paths = [Path(p) for p in glob.glob(os.path.expanduser(source), recursive=True) if Path(p).is_file()]
    if not paths:
        raise ValueError(
            f"no images found for {source!r}: give a folder holding {', '.join(FOLDER_SUFFIXES)} files, "
            "or a glob pattern that matches files."
        )
    cases: dict[str, Path] = {}
    for path in sorted(paths):
        name = case_name(path)
        if name in cases:
            raise ValueError(f"{cases[name]} and {path} are both case {name!r}; keep one of them.")
        cases[name] = path.resolve()
    return dict(sorted(cases.items()))


def source_folders(source: str | os.PathLike, cases: dict[str, Path]) -> set[Path]:
    """The folders a job reads from: ``source`` itself when it is a folder, and each file's folder."""
    folders = {path.parent for path in cases.values()}
    if Path(source).expanduser().is_dir():
        folders.add(Path(source).expanduser().resolve())
    return folders


def check_output_folder(output: str | os.PathLike, read_from: set[Path]) -> Path:
    """Refuse an output folder that is one of the folders read from, or inside one.

    Parameters
    ----------
    output : str or os.PathLike
        The output folder (need not exist yet).
    read_from : set of Path
        Folders holding inputs (see :func:`source_folders`).

    Returns
    -------
    Path
        ``output``, resolved.

    Raises
    ------
    ValueError
        ``output`` equals or lies inside one of ``read_from``.

    Examples
    --------
    >>> from pathlib import Path
    >>> from monai_topo.inference.cases import check_output_folder
    >>> check_output_folder("/data/out", {Path("/data/in")}).as_posix()
    '/data/out'
    >>> check_output_folder("/data/in/seg", {Path("/data/in")})
    Traceback (most recent call last):
    ...
    ValueError: output folder /data/in/seg is inside input folder /data/in; outputs must go elsewhere.
    """
    output = Path(output).expanduser().resolve()
    for folder in sorted(read_from):
        if output == folder or folder in output.parents:
            relation = "is" if output == folder else "is inside"
            raise ValueError(
                f"output folder {output} {relation} input folder {folder}; outputs must go elsewhere."
            )
    return output
