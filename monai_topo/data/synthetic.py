"""Synthetic probability maps and images with known topology."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from monai_topo.validation import check_bool, check_int, check_number, check_seed


def noisy_ring(
    size: int = 64,
    radius: float = 0.3,
    thickness: float = 0.12,
    gap: bool = True,
    noise: float = 0.15,
    seed: int = 0,
) -> np.ndarray:
    """A ring-shaped probability map with a weak gap and smooth noise, like a U-Net output.

    Parameters
    ----------
    size : int
        Side of the square image in pixels.
    radius, thickness : float
        Ring radius and thickness as fractions of ``size``.
    gap : bool
        Weaken one sector so that the ring breaks at threshold 0.5.
    noise : float
        Standard deviation of the smoothed noise added before clipping to [0, 1].
    seed : int
        Seed of the noise.

    Returns
    -------
    numpy.ndarray of float32, shape (size, size)
        Values in [0, 1].

    Examples
    --------
    >>> from monai_topo.data import noisy_ring
    >>> noisy_ring(32).shape
    (32, 32)
    """
    size = check_int(size, "size", minimum=2)
    radius = check_number(radius, "radius", 0)
    thickness = check_number(thickness, "thickness", 0)
    if thickness == 0:
        raise ValueError("thickness must be > 0 (a fraction of size), got 0.")
    gap, noise, seed = check_bool(gap, "gap"), check_number(noise, "noise", 0), check_seed(seed, "seed")
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    distance = np.abs(np.hypot(yy, xx) - radius)
    prob = np.exp(-((distance / (thickness / 2)) ** 4))
    if gap:
        angle = np.arctan2(yy, xx)
        prob *= 1 - 0.7 * np.exp(-((angle / 0.25) ** 2))
    prob = prob + noise * smooth_noise(np.random.default_rng(seed), (size, size), sigma=size / 32)
    return np.clip(prob, 0, 1).astype(np.float32)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma) -> np.ndarray:
    """Gaussian white noise smoothed with a Gaussian of width ``sigma`` (pixels), rescaled to unit std.

    Examples
    --------
    >>> import numpy as np
    >>> from monai_topo.data.synthetic import smooth_noise
    >>> round(float(smooth_noise(np.random.default_rng(0), (32, 32), 2.0).std()), 6)
    1.0
    """
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=sigma)
    return field / (field.std() + 1e-12)
