"""Image phantoms with labels of known topology: a short-axis cardiac slice and a 3D ultrasound placenta.

The images imitate what makes the real tasks hard for a segmentation network (bright neighbours,
dark structures inside the organ, texture, noise) while the labels have exactly the topology of the
prior: the myocardium is one ring (Betti (1, 1)), or one disc (1, 0) in apical slices; the placenta
is one solid blob (1, 0, 0). Both connectivities ("full" and "face") give these Betti numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from monai_topo.data.synthetic import smooth_noise
from monai_topo.validation import check_bool, check_int, check_number, check_seed, check_shape

__all__ = ["MYOCARDIUM_PRIORS", "PLACENTA_PRIOR", "myocardium_phantom", "placenta_phantom"]

MYOCARDIUM_PRIORS = {"ring": (1, 1), "apical": (1, 0)}
PLACENTA_PRIOR = (1, 0, 0)

RandomGenerator = np.random.Generator | int | None

# Radial thickness of the myocardium never drops below this many pixels, so that the ring stays closed
# under both connectivities after discretisation.
MIN_WALL_PIXELS = 2.5


def _generator(rng: RandomGenerator) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(check_seed(rng, "rng"))
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {rng!r}.")


def _ellipse(yy, xx, centre, axes, angle=0.0) -> np.ndarray:
    """Elliptic radius: < 1 inside the ellipse with semi-axes ``axes`` rotated by ``angle``."""
    dy, dx = yy - centre[0], xx - centre[1]
    u = dy * np.cos(angle) + dx * np.sin(angle)
    v = -dy * np.sin(angle) + dx * np.cos(angle)
    return np.hypot(u / axes[0], v / axes[1])


def _rescale01(image: np.ndarray) -> np.ndarray:
    return ((image - image.min()) / (image.max() - image.min())).astype(np.float32)


def myocardium_phantom(
    size: int = 128,
    rng: RandomGenerator = None,
    apical: bool = False,
    noise: float = 0.04,
) -> tuple[np.ndarray, np.ndarray]:
    """A short-axis cine-MRI-like slice with its left-ventricle myocardium label.

    The myocardium is a ring of random radius, eccentricity, orientation and (angle-dependent)
    thickness around a bright blood pool holding dark papillary muscles; around it lie a bright right
    ventricle beside the septum, bright epicardial fat, dark lungs and textured tissue. Rician noise.

    Parameters
    ----------
    size : int
        Side of the square image in pixels (at least 32).
    rng : numpy.random.Generator, int or None
        Source of randomness, or a seed.
    apical : bool
        Draw an apical slice: the cavity has closed and the myocardium is a disc, prior ``(1, 0)``,
        instead of a ring, prior ``(1, 1)`` (see ``MYOCARDIUM_PRIORS``).
    noise : float
        Standard deviation of the Rician noise, relative to the [0, 1] intensity range.

    Returns
    -------
    image : numpy.ndarray of float32, shape (size, size)
        Values in [0, 1].
    label : numpy.ndarray of uint8, shape (size, size)
        1 on the myocardium, 0 elsewhere.

    Examples
    --------
    >>> from monai_topo.data import myocardium_phantom
    >>> from monai_topo.ph import betti_numbers
    >>> image, label = myocardium_phantom(64, rng=0)
    >>> image.shape, image.dtype, betti_numbers(label)
    ((64, 64), dtype('float32'), (1, 1))
    >>> betti_numbers(myocardium_phantom(64, rng=0, apical=True)[1])
    (1, 0)
    """
    size = check_int(size, "size", minimum=32)
    noise = check_number(noise, "noise", 0)
    apical = check_bool(apical, "apical")
    rng = _generator(rng)
    yy, xx = np.mgrid[:size, :size].astype(float)
    centre = size / 2 + rng.uniform(-0.06, 0.06, 2) * size
    angle = rng.uniform(0, np.pi)
    theta = np.arctan2(yy - centre[0], xx - centre[1])
    radius = np.hypot(yy - centre[0], xx - centre[1])

    # Wall thickness varies smoothly around the ring (thicker septum, thinner free wall).
    mean_wall = max(rng.uniform(0.045, 0.07) * size, MIN_WALL_PIXELS / 0.7)
    wall = mean_wall * (1 + 0.3 * np.cos(theta - rng.uniform(-np.pi, np.pi)))
    if apical:
        cavity = np.zeros_like(radius, dtype=bool)
        outer_axes = rng.uniform(0.07, 0.12) * size * np.array([1.0, rng.uniform(0.8, 1.0)])
        label = _ellipse(yy, xx, centre, outer_axes, angle) <= 1
    else:
        inner_axes = rng.uniform(0.09, 0.15) * size * np.array([1.0, rng.uniform(0.7, 1.0)])
        cavity_radius = radius / _ellipse(yy, xx, centre, inner_axes, angle)
        cavity = radius < cavity_radius
        label = ~cavity & (radius <= cavity_radius + wall)

    image = 0.42 + 0.07 * smooth_noise(rng, (size, size), size / 24) + 0.03 * smooth_noise(rng, (size, size), 1.0)
    for side in (-1, 1):  # lungs
        lung_centre = (size * rng.uniform(0.3, 0.5), size / 2 + side * size * rng.uniform(0.33, 0.4))
        lung = _ellipse(yy, xx, lung_centre, size * rng.uniform(0.12, 0.18, 2), rng.uniform(0, np.pi)) <= 1
        image[lung & ~label & ~cavity] = 0.06
    epicardium = ndimage.binary_dilation(label | cavity, iterations=int(mean_wall)) & ~label & ~cavity
    fat = epicardium & (smooth_noise(rng, (size, size), size / 16) > 0.6)
    image[fat] = 0.8
    # Right ventricle: a bright pool on one side of the septum, its own thin wall around it.
    rv_direction = rng.uniform(0.6, 1.2) * np.pi * rng.choice([-1, 1])
    rv_distance = radius[label].max() + rng.uniform(0.06, 0.1) * size
    rv_centre = centre + rv_distance * np.array([np.sin(rv_direction), np.cos(rv_direction)])
    rv = _ellipse(yy, xx, rv_centre, size * np.array([rng.uniform(0.08, 0.12), rng.uniform(0.12, 0.18)]),
                  rv_direction) <= 1
    rv &= ~ndimage.binary_dilation(label | cavity, iterations=2)
    image[ndimage.binary_dilation(rv, iterations=1) & ~rv & ~label & ~cavity] = 0.3
    image[rv] = 0.78 + 0.04 * smooth_noise(rng, (size, size), 2.0)[rv]

    image[label] = 0.28 + 0.03 * smooth_noise(rng, (size, size), 1.5)[label]
    if cavity.any():
        image[cavity] = 0.88 + 0.03 * smooth_noise(rng, (size, size), 2.0)[cavity]
        # Papillary muscles: dark, myocardium-like blobs inside the cavity, touching the wall, not labelled.
        inner = np.argwhere(cavity & ndimage.binary_dilation(label, iterations=2))
        for point in inner[rng.choice(len(inner), size=rng.integers(1, 3), replace=False)]:
            muscle = np.hypot(yy - point[0], xx - point[1]) <= rng.uniform(0.015, 0.03) * size
            image[muscle & cavity] = 0.32

    image = ndimage.gaussian_filter(image, sigma=0.7)  # partial volume
    image = np.hypot(image + noise * rng.standard_normal(image.shape), noise * rng.standard_normal(image.shape))
    return _rescale01(image), label.astype(np.uint8)


def _blob_surface_radius(rng: np.random.Generator, directions: np.ndarray, roughness: float) -> np.ndarray:
    """A smooth positive radius over the unit sphere (a few low-frequency waves)."""
    radius = np.ones(directions.shape[1:])
    for _ in range(4):
        wave = rng.normal(size=3)
        wave *= rng.uniform(1.0, 2.0) / np.linalg.norm(wave)
        radius += roughness / 2 * np.cos(np.tensordot(wave, directions, axes=1) * np.pi + rng.uniform(0, 2 * np.pi))
    return radius


def placenta_phantom(
    shape: Sequence[int] = (48, 64, 64),
    rng: RandomGenerator = None,
    roughness: float = 0.2,
    distractors: int = 4,
    speckle: float = 0.7,
) -> tuple[np.ndarray, np.ndarray]:
    """A 3D ultrasound-like volume of a placenta: one smooth solid blob in speckle, with distractors.

    The placenta is a flattened, smoothly deformed ellipsoid lying against a textured uterine wall, in
    dark amniotic fluid. To tempt a network into wrong topology, bright ellipsoids and a bright
    curved tube (fetal parts) lie near or touch it and dark lakes sit inside it (they belong to the
    label, which is always one solid blob, Betti ``(1, 0, 0)``). Multiplicative Rayleigh speckle.

    Parameters
    ----------
    shape : sequence of 3 int
        ``(D, H, W)`` in voxels, each at least 24; D is the axis across the (flattened) placenta.
    rng : numpy.random.Generator, int or None
        Source of randomness, or a seed.
    roughness : float
        Relative amplitude of the smooth deformation of the ellipsoid, in [0, 0.5].
    distractors : int
        Number of bright blobs near the placenta (a tube is added when positive).
    speckle : float
        Strength of the speckle in [0, 1]: 1 is fully developed speckle (Rayleigh, signal-to-noise ratio
        1.9), 0 none; the default keeps the task learnable by a small network in minutes.

    Returns
    -------
    image : numpy.ndarray of float32, shape ``shape``
        Values in [0, 1].
    label : numpy.ndarray of uint8, shape ``shape``
        1 on the placenta, 0 elsewhere.

    Examples
    --------
    >>> from monai_topo.data import placenta_phantom
    >>> from monai_topo.ph import betti_numbers
    >>> image, label = placenta_phantom((24, 32, 32), rng=0)
    >>> image.shape, image.dtype, betti_numbers(label)
    ((24, 32, 32), dtype('float32'), (1, 0, 0))
    """
    shape = check_shape(shape, "shape", (3,), minimum=24)  # (D, H, W), every side at least 24 voxels
    roughness = check_number(roughness, "roughness", 0, 0.5)
    speckle = check_number(speckle, "speckle", 0, 1)
    distractors = check_int(distractors, "distractors", minimum=0)
    rng = _generator(rng)
    size = np.array(shape, float)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"))

    # The blob: a flattened ellipsoid, rotated in the H-W plane, deformed along each direction.
    axes = size * np.array([rng.uniform(0.17, 0.22), rng.uniform(0.26, 0.32), rng.uniform(0.28, 0.34)])
    centre = size / 2 + rng.uniform(-0.05, 0.05, 3) * size
    angle = rng.uniform(0, np.pi)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    local = np.tensordot(rotation.T, grid - centre[:, None, None, None], axes=1) / axes[:, None, None, None]
    elliptic_radius = np.linalg.norm(local, axis=0)
    directions = local / np.maximum(elliptic_radius, 1e-9)
    label = elliptic_radius <= _blob_surface_radius(rng, directions, roughness)
    # Star-shaped sets are contractible, but a voxel grid can pinch off a sliver: keep the main body.
    components, count = ndimage.label(label)
    if count > 1:
        label = components == np.argmax(np.bincount(components.ravel())[1:]) + 1
    label = ndimage.binary_fill_holes(label)

    echo = 0.1 + 0.03 * smooth_noise(rng, shape, 3.0)  # amniotic fluid
    wall_depth = centre[0] + axes[0] * 0.8 + 2 * smooth_noise(rng, shape[1:], shape[1] / 6)
    wall = grid[0] >= wall_depth[None]
    echo[wall] = 0.38 + 0.06 * smooth_noise(rng, shape, 2.0)[wall]
    echo[label] = 0.65 + 0.05 * smooth_noise(rng, shape, 2.0)[label]
    lakes = ndimage.binary_erosion(label, iterations=2) & (smooth_noise(rng, shape, 1.5) > 2.0)
    echo[lakes] = 0.15

    outside = ~ndimage.binary_dilation(label, iterations=1) & ~wall
    for _ in range(distractors):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        spot = centre + direction * axes * rng.uniform(1.0, 1.4)
        blob = np.linalg.norm((grid - spot[:, None, None, None]) / (size * rng.uniform(0.05, 0.09, 3))[:, None, None,
                                                                                                     None], axis=0) <= 1
        echo[blob & outside] = 0.9
    if distractors:
        # A bright arc (fetal rib or limb) hugging the placenta surface: tempts a handle.
        t = np.linspace(-0.6, 0.6, 60) * np.pi
        phase = rng.uniform(0, 2 * np.pi)
        arc = centre[:, None] + np.stack([
            -axes[0] * 1.05 * np.cos(t),
            axes[1] * 1.05 * np.cos(t + phase) * np.sin(t),
            axes[2] * 1.05 * np.sin(t + phase),
        ])
        tube = np.zeros(shape, bool)
        idx = np.clip(np.round(arc).astype(int), 0, np.array(shape)[:, None] - 1)
        tube[tuple(idx)] = True
        tube = ndimage.binary_dilation(tube, iterations=1)
        echo[tube & outside] = 0.95

    # Speckle: magnitude of a spatially correlated complex Gaussian field is Rayleigh distributed.
    speckle_field = np.hypot(*(ndimage.gaussian_filter(rng.standard_normal(shape), (0.6, 1.0, 1.0)) for _ in range(2)))
    image = ndimage.gaussian_filter(echo, 0.8) * (1 - speckle + speckle * speckle_field / speckle_field.mean())
    image = np.minimum(image, np.quantile(image, 0.995))
    return _rescale01(image), label.astype(np.uint8)
