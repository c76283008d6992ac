"""Atomic file writes: a file appears under its final name complete, or not at all."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_PREFIX = ".tmp-"
"""Temporary files start with this (hidden on POSIX), so no reader mistakes them for results."""

FAULT_HOOK: Callable[[str, Path], None] | None = None
"""Fault injection for tests: called as ``FAULT_HOOK(point, final)`` at ``"written"`` (the file is
complete under its temporary name) and ``"renamed"`` (it has its final name), e.g. to kill the
process there and check that a re-run recovers."""


def _fault(point: str, final: Path) -> None:
    if FAULT_HOOK is not None:
        FAULT_HOOK(point, final)


@contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; move it onto ``final`` when the block succeeds.

    The temporary file lives in the same folder, so :func:`os.replace` is an atomic rename, and
    it keeps the final name's suffixes (``.nii.gz``, ``.csv``), so writers that choose a format
    from the suffix behave as they would for ``final``. If the block raises, the temporary file is
    removed and ``final`` is left as it was.

    Parameters
    ----------
    final : str or os.PathLike
        Where the finished file must end up.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from monai_topo.inference.atomic import atomic_path
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(folder / "a.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> (folder / "a.txt").read_text(), sorted(p.name for p in folder.iterdir())
    ('done', ['a.txt'])
    """
    final = Path(final)
    tmp = final.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}-{final.name}")
    try:
        yield tmp
        _fault("written", final)
        os.replace(tmp, final)
        _fault("renamed", final)
    finally:
        tmp.unlink(missing_ok=True)


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that an interrupted :func:`atomic_path` left in ``folder``.

    Parameters
    ----------
    folder : str or os.PathLike
        The output folder of an earlier run.

    Returns
    -------
    list of Path
        The files removed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from monai_topo.inference.atomic import remove_temporaries
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / ".tmp-0123-case_seg.nii.gz").write_bytes(b"half")
    >>> [p.name for p in remove_temporaries(folder)]
    ['.tmp-0123-case_seg.nii.gz']
    """
    removed = sorted(Path(folder).glob(f"{TEMP_PREFIX}*"))
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
