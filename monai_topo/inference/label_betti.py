"""Betti numbers of every label of a segmentation (what ``monai-topo betti`` prints)."""

from __future__ import annotations

import numpy as np
import torch

from monai_topo.ph import DEFAULT_CONNECTIVITY, betti_numbers, check_connectivity


def label_betti_table(labels, connectivity: str = DEFAULT_CONNECTIVITY) -> list[dict]:
    """Voxel count and Betti numbers of each non-zero label of a label map.

    Parameters
    ----------
    labels : numpy.ndarray or torch.Tensor
        A 2D or 3D label map of whole numbers; singleton axes are dropped first, so a volume of
        one slice counts as 2D.
    connectivity : {"full", "face"}
        Foreground adjacency, as in :func:`monai_topo.ph.betti_numbers`.

    Returns
    -------
    list of dict
        One ``{"label", "voxels", "betti"}`` per label, by label value; ``betti`` is
        ``(β0, β1)`` in 2D and ``(β0, β1, β2)`` in 3D.

    Raises
    ------
    ValueError
        Not 2D or 3D after dropping singleton axes, or values that are not whole numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from monai_topo.inference.label_betti import label_betti_table
    >>> seg = np.zeros((7, 12), np.uint8)
    >>> seg[1:6, 1:6] = 1
    >>> seg[3, 3] = 0  # label 1: a ring
    >>> seg[2:5, 8:11] = 2  # label 2: a disc
    >>> [(row["label"], row["betti"]) for row in label_betti_table(seg)]
    [(1, (1, 1)), (2, (1, 0))]
    """
    check_connectivity(connectivity)
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.squeeze(np.asarray(labels))
    if labels.ndim not in (2, 3):
        raise ValueError(
            f"labels must be a 2D or 3D label map (after dropping singleton axes), got shape {labels.shape}."
        )
    if not np.issubdtype(labels.dtype, np.integer) and not (
        np.issubdtype(labels.dtype, np.floating) and np.array_equal(labels, np.round(labels))
    ):
        raise ValueError(f"labels must hold whole label numbers, got dtype {labels.dtype} with fractional values.")
    values, counts = np.unique(labels, return_counts=True)
    return [
        {"label": int(value), "voxels": int(count), "betti": betti_numbers(labels == value, connectivity)}
        for value, count in zip(values, counts)
        if value != 0
    ]
