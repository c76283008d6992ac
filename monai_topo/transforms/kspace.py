"""Corruption by zeroing random lines of k-space (Clough et al., TPAMI 2020, experiments 1-2).

Each 2D slice is Fourier transformed, ``m_rows`` random horizontal lines (rows, fixed frequency along
the first spatial axis) and ``m_cols`` random vertical lines (columns) of its centred k-space are set
to zero, the ``keep_centre`` central lines of each direction are never zeroed, and the magnitude of
the inverse transform is rescaled to [0, 1]. The myocardium experiment zeroed ``m`` of 80 rows and
kept the middle 8 (``KSpaceLineCorruption(m_rows=m, keep_centre=8)``); the MNIST experiment zeroed
``m`` rows and ``m`` columns and kept no centre (``KSpaceLineCorruption(m, m, keep_centre=0)``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from numbers import Integral

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import MapTransform, RandomizableTransform
from monai.transforms.utils import rescale_array
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from monai_topo.validation import check_int, check_number, check_seed, check_shape, native_array

__all__ = [
    "KSpaceLineCorruption",
    "KSpaceLineCorruptiond",
    "apply_kspace_line_mask",
    "corrupt_kspace_lines",
    "kspace_line_mask",
]

RandomGenerator = np.random.Generator | np.random.RandomState | int | None


def _centre_lines(n_lines: int, keep_centre: int) -> np.ndarray:
    """Indices of the ``keep_centre`` lines around the zero frequency of a centred spectrum."""
    start = n_lines // 2 - keep_centre // 2
    return np.arange(start, start + keep_centre)


def _generator(rng: RandomGenerator) -> np.random.Generator | np.random.RandomState:
    if isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    if rng is None or (isinstance(rng, Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(check_seed(rng, "rng"))
    raise TypeError(f"rng must be a numpy Generator or RandomState, an int seed or None, got {rng!r}.")


def _image(image, name: str) -> torch.Tensor:
    """A channel-first, real, finite, non-empty image (C, H, W[, D]) as a tensor."""
    if isinstance(image, np.ndarray):
        image = native_array(image, name)
    elif not isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be a numpy.ndarray or torch.Tensor, got {type(image).__name__}.")
    if image.ndim not in (3, 4):
        raise ValueError(f"{name} must be channel-first (C, H, W) or (C, H, W, D), got shape {tuple(image.shape)}.")
    if 0 in image.shape:
        raise ValueError(f"{name} is empty (shape {tuple(image.shape)}).")
    return image


def _sample_lines(n_lines: int, m: int, keep_centre: int, rng, name: str) -> np.ndarray:
    available = np.setdiff1d(np.arange(n_lines), _centre_lines(n_lines, keep_centre))
    if not 0 <= m <= available.size:
        raise ValueError(
            f"{name} must be between 0 and {available.size} (the {n_lines} lines less the keep_centre={keep_centre} "
            f"central ones), got {name}={m}."
        )
    return rng.choice(available, size=int(m), replace=False)


def kspace_line_mask(
    spatial_shape: tuple[int, int],
    m_rows: int,
    m_cols: int = 0,
    keep_centre: int = 8,
    rng: RandomGenerator = None,
) -> np.ndarray:
    """Random mask of the k-space samples that survive line corruption.

    Parameters
    ----------
    spatial_shape : tuple of int
        ``(H, W)``, the shape of one 2D slice.
    m_rows : int
        Number of horizontal lines (rows of the centred spectrum) to zero, ``0 <= m_rows <= H - keep_centre``.
    m_cols : int
        Number of vertical lines (columns) to zero, ``0 <= m_cols <= W - keep_centre``.
    keep_centre : int
        Number of central rows and of central columns (around the zero frequency) that are never zeroed.
        8 as in the myocardium experiment; use 0 for the MNIST experiment, which kept no centre.
    rng : numpy.random.Generator, numpy.random.RandomState, int or None
        Source of randomness, or a seed for :func:`numpy.random.default_rng`.

    Returns
    -------
    numpy.ndarray of bool, shape (H, W)
        ``True`` where the centred (``fftshift``-ed) k-space is kept.

    Examples
    --------
    >>> from monai_topo.transforms import kspace_line_mask
    >>> mask = kspace_line_mask((16, 16), m_rows=5, keep_centre=4, rng=0)
    >>> int((~mask).all(axis=1).sum()), bool(mask[6:10].all())
    (5, True)
    """
    n_rows, n_cols = check_shape(spatial_shape, "spatial_shape", (2,))
    keep_centre = check_int(keep_centre, "keep_centre", minimum=0)
    m_rows, m_cols = check_int(m_rows, "m_rows"), check_int(m_cols, "m_cols")
    for name, n, m in (("m_rows", n_rows, m_rows), ("m_cols", n_cols, m_cols)):
        if m and keep_centre > n:
            raise ValueError(f"keep_centre={keep_centre} exceeds the {n} lines available to {name}.")
    rng = _generator(rng)
    mask = np.ones((n_rows, n_cols), dtype=bool)
    mask[_sample_lines(n_rows, m_rows, keep_centre, rng, "m_rows"), :] = False
    mask[:, _sample_lines(n_cols, m_cols, keep_centre, rng, "m_cols")] = False
    return mask


def apply_kspace_line_mask(image: NdarrayOrTensor, mask: NdarrayOrTensor) -> NdarrayOrTensor:
    """Zero the k-space of every 2D slice outside ``mask``; return the magnitude rescaled to [0, 1].

    Parameters
    ----------
    image : numpy.ndarray or torch.Tensor, shape (C, H, W) or (C, H, W, D)
        Channel-first image; a 3D volume is treated as a stack of ``(H, W)`` slices along ``D``,
        each corrupted with the same mask.
    mask : numpy.ndarray or torch.Tensor of bool, shape (H, W)
        ``True`` where the centred k-space is kept, e.g. from :func:`kspace_line_mask` (numbers
        must be 0 or 1: a soft mask is not a line mask).

    Returns
    -------
    numpy.ndarray or torch.Tensor of float32, same shape and type as ``image``
        Each channel rescaled to [0, 1] (a constant channel becomes 0).

    Examples
    --------
    >>> import numpy as np
    >>> from monai_topo.transforms import apply_kspace_line_mask
    >>> image = np.random.default_rng(0).random((1, 8, 8))
    >>> out = apply_kspace_line_mask(image, np.ones((8, 8), bool))
    >>> bool(np.allclose(out, (image - image.min()) / (image.max() - image.min()), atol=1e-5))
    True
    """
    x = convert_to_tensor(_image(image, "image"), track_meta=False)
    if x.is_complex():
        raise TypeError(f"image must be real (the magnitude image), got dtype {x.dtype}.")
    if not torch.isfinite(x).all():
        raise ValueError("image contains NaN or Inf values.")
    if isinstance(mask, np.ndarray):
        mask = native_array(mask, "mask")
    elif not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a numpy.ndarray or torch.Tensor of bool, got {type(mask).__name__}.")
    keep = convert_to_tensor(mask, track_meta=False).to(x.device)
    if keep.dtype != torch.bool:
        if keep.is_complex() or not bool(((keep == 0) | (keep == 1)).all()):
            raise ValueError("mask must be boolean (True where k-space is kept) or hold only 0 and 1.")
        keep = keep.bool()
    if tuple(keep.shape) != tuple(x.shape[1:3]):
        raise ValueError(f"mask shape {tuple(keep.shape)} does not match the image slice shape {tuple(x.shape[1:3])}.")
    if x.ndim == 4:
        keep = keep[..., None]
    spatial = (1, 2)
    kspace = torch.fft.fftshift(torch.fft.fft2(x.to(torch.float64), dim=spatial), dim=spatial)
    kspace = kspace * keep
    magnitude = torch.fft.ifft2(torch.fft.ifftshift(kspace, dim=spatial), dim=spatial).abs()
    out = torch.stack([rescale_array(channel, 0.0, 1.0, dtype=None) for channel in magnitude]).to(torch.float32)
    return convert_to_dst_type(out, image, dtype=torch.float32 if isinstance(image, torch.Tensor) else np.float32)[0]


def corrupt_kspace_lines(
    image: NdarrayOrTensor,
    m_rows: int,
    m_cols: int = 0,
    keep_centre: int = 8,
    rng: RandomGenerator = None,
) -> NdarrayOrTensor:
    """Zero random lines of the 2D k-space of each slice, as in Clough et al. (TPAMI 2020).

    Parameters
    ----------
    image : numpy.ndarray or torch.Tensor, shape (C, H, W) or (C, H, W, D)
        Channel-first image (see :func:`apply_kspace_line_mask`).
    m_rows, m_cols : int
        Numbers of horizontal and vertical k-space lines to zero (see :func:`kspace_line_mask`).
    keep_centre : int
        Central lines never zeroed; 8 (myocardium paper) by default, 0 for the MNIST setting.
    rng : numpy.random.Generator, numpy.random.RandomState, int or None
        Source of randomness, or a seed.

    Returns
    -------
    numpy.ndarray or torch.Tensor of float32
        The corrupted image, each channel rescaled to [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from monai_topo.transforms import corrupt_kspace_lines
    >>> image = np.zeros((1, 32, 32), np.float32)
    >>> image[0, 8:24, 8:24] = 1
    >>> out = corrupt_kspace_lines(image, m_rows=6, m_cols=6, keep_centre=0, rng=1)
    >>> out.shape, float(out.min()), float(out.max())
    ((1, 32, 32), 0.0, 1.0)
    """
    shape = tuple(_image(image, "image").shape)
    return apply_kspace_line_mask(image, kspace_line_mask(shape[1:3], m_rows, m_cols, keep_centre, rng))


class KSpaceLineCorruption(RandomizableTransform):
    """Randomly zero k-space lines of each 2D slice; see :func:`corrupt_kspace_lines`.

    Parameters
    ----------
    m_rows : int
        Number of horizontal k-space lines to zero.
    m_cols : int
        Number of vertical k-space lines to zero (the MNIST experiment used ``m_cols = m_rows``).
    keep_centre : int
        Central lines of each direction never zeroed (8 in the myocardium experiment, 0 for MNIST).
    prob : float
        Probability of corrupting an image; otherwise it is returned unchanged.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.transforms import KSpaceLineCorruption
    >>> corrupt = KSpaceLineCorruption(m_rows=20, keep_centre=8)
    >>> _ = corrupt.set_random_state(seed=0)
    >>> corrupt(torch.rand(1, 80, 80)).shape
    torch.Size([1, 80, 80])
    >>> int((~corrupt.mask).all(axis=1).sum())
    20
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, m_rows: int, m_cols: int = 0, keep_centre: int = 8, prob: float = 1.0) -> None:
        RandomizableTransform.__init__(self, check_number(prob, "prob", 0, 1))
        self.m_rows = check_int(m_rows, "m_rows", minimum=0)
        self.m_cols = check_int(m_cols, "m_cols", minimum=0)
        self.keep_centre = check_int(keep_centre, "keep_centre", minimum=0)
        self.mask: np.ndarray | None = None

    def randomize(self, img: NdarrayOrTensor) -> None:
        """Decide whether to corrupt and draw the lines to zero for an image like ``img``."""
        super().randomize(None)
        if self._do_transform:
            self.mask = kspace_line_mask(tuple(img.shape[1:3]), self.m_rows, self.m_cols, self.keep_centre, self.R)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Corrupt ``img`` (C, H, W[, D]); with ``randomize=False`` reuse the last drawn lines."""
        img = convert_to_tensor(_image(img, "img"), track_meta=get_track_meta())
        if randomize:
            self.randomize(img)
        if not self._do_transform:
            return img
        if self.mask is None:
            raise RuntimeError("call randomize() before applying with randomize=False.")
        return apply_kspace_line_mask(img, self.mask)


class KSpaceLineCorruptiond(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`KSpaceLineCorruption`; all keys share the same zeroed lines.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the images to corrupt (usually only the image, never the label).
    m_rows, m_cols, keep_centre, prob
        As in :class:`KSpaceLineCorruption`.
    allow_missing_keys : bool
        Do not raise if a key is missing.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.transforms import KSpaceLineCorruptiond
    >>> corrupt = KSpaceLineCorruptiond("image", m_rows=4, m_cols=4, keep_centre=0)
    >>> _ = corrupt.set_random_state(seed=0)
    >>> out = corrupt({"image": torch.rand(1, 28, 28), "label": torch.ones(1, 28, 28)})
    >>> float(out["image"].max()), float(out["label"].min())
    (1.0, 1.0)
    """

    backend = KSpaceLineCorruption.backend

    def __init__(
        self,
        keys: KeysCollection,
        m_rows: int,
        m_cols: int = 0,
        keep_centre: int = 8,
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, check_number(prob, "prob", 0, 1))
        self.corruption = KSpaceLineCorruption(m_rows, m_cols, keep_centre, prob=1.0)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> KSpaceLineCorruptiond:
        super().set_random_state(seed, state)
        self.corruption.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        first_key = self.first_key(d)
        if not self._do_transform or first_key == ():
            for key in self.key_iterator(d):
                d[key] = convert_to_tensor(d[key], track_meta=get_track_meta())
            return d
        self.corruption.randomize(d[first_key])
        for key in self.key_iterator(d):
            d[key] = self.corruption(d[key], randomize=False)
        return d
