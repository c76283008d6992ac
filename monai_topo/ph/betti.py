"""Betti numbers of binary masks, from connected-component labelling and the Euler number."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from skimage.measure import euler_number

from monai_topo.ph.persistence import DEFAULT_CONNECTIVITY, check_connectivity


def _structure(ndim: int, full: bool) -> np.ndarray:
    return ndimage.generate_binary_structure(ndim, ndim if full else 1)


def _as_mask(mask) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu()
        mask = (mask.float() if mask.dtype == torch.bfloat16 else mask).numpy()  # numpy has no bfloat16
    elif isinstance(mask, (list, tuple)):
        mask = np.asarray(mask)
    elif not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be a numpy.ndarray or torch.Tensor, got {type(mask).__name__}.")
    if mask.ndim not in (2, 3):
        raise ValueError(f"mask must be 2D (H, W) or 3D (D, H, W), got shape {mask.shape}.")
    if mask.size == 0:
        raise ValueError(f"mask is empty (shape {mask.shape}).")
    if mask.dtype != bool:
        if mask.dtype.kind not in "iuf":
            raise TypeError(f"mask must be boolean or real numbers, got dtype {mask.dtype}.")
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("mask must be binary (values 0 and 1); threshold probabilities first, e.g. x >= 0.5.")
        mask = mask.astype(bool)
    return mask


def betti_numbers(mask, connectivity: str = DEFAULT_CONNECTIVITY) -> tuple[int, ...]:
    """Betti numbers of a binary 2D or 3D mask.

    β0 counts foreground components, the top Betti number counts bounded background
    components (holes in 2D, cavities in 3D), and in 3D β1 (tunnels/handles) follows from the
    Euler characteristic: β1 = β0 + β2 − χ.

    Parameters
    ----------
    mask : numpy.ndarray or torch.Tensor, shape (H, W) or (D, H, W)
        Boolean mask, or numbers that are all 0 or 1.
    connectivity : {"full", "face"}
        Foreground adjacency: ``"full"`` 8 (2D) / 26 (3D), ``"face"`` 4 / 6; the background
        uses the complementary one. Matches :func:`monai_topo.ph.cubical_persistence`.

    Returns
    -------
    tuple of int
        ``(β0, β1)`` for 2D, ``(β0, β1, β2)`` for 3D.

    Examples
    --------
    >>> import numpy as np
    >>> from monai_topo.ph import betti_numbers
    >>> ring = np.zeros((5, 5), bool)
    >>> ring[1:4, 1:4] = True
    >>> ring[2, 2] = False
    >>> betti_numbers(ring)
    (1, 1)
    """
    full = check_connectivity(connectivity) == "full"
    mask = _as_mask(mask)
    ndim = mask.ndim
    b0 = ndimage.label(mask, structure=_structure(ndim, full))[1]
    # One ring of padding joins every background region touching the border into the outside.
    background = np.pad(~mask, 1, constant_values=True)
    b_top = ndimage.label(background, structure=_structure(ndim, not full))[1] - 1
    if ndim == 2:
        return (b0, b_top)
    chi = euler_number(mask, connectivity=3 if full else 1)
    return (b0, b0 + b_top - int(chi), b_top)
