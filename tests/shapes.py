"""Binary shapes with known Betti numbers, built from distance functions (test reference)."""

import numpy as np


def grid(shape):
    return np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")


def disc(n=21):
    y, x = grid((n, n))
    return np.hypot(y - n // 2, x - n // 2) <= n / 3


def ring(n=21, centre=None, r_in=4.0, r_out=8.0):
    y, x = grid((n, n))
    cy, cx = centre if centre is not None else (n // 2, n // 2)
    r = np.hypot(y - cy, x - cx)
    return (r >= r_in) & (r <= r_out)


def two_rings(n=40):
    return ring(n, (10, 10), 3, 7) | ring(n, (28, 28), 3, 7)


def figure_eight(n=31, shift=14):
    """Two annuli overlapping along a lens: one component, two holes."""
    m = np.zeros((n, n + shift), bool)
    m[:, :n] |= ring(n, (n // 2, n // 2), 4, 9)
    m[:, shift:] |= ring(n, (n // 2, n // 2), 4, 9)
    return m


def ball(n=15):
    z, y, x = grid((n, n, n))
    c = n // 2
    return np.sqrt((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2) <= n / 3


def shell(n=17):
    z, y, x = grid((n, n, n))
    c = n // 2
    r = np.sqrt((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2)
    return (r >= 3) & (r <= 6.5)


def _torus_distance(n, cz, cy, cx, big_r):
    z, y, x = grid(n)
    return np.sqrt((np.hypot(y - cy, x - cx) - big_r) ** 2 + (z - cz) ** 2)


def solid_torus(n=(11, 25, 25)):
    return _torus_distance(n, n[0] // 2, n[1] // 2, n[2] // 2, 7.0) <= 3.0


def hollow_torus(n=(15, 31, 31)):
    d = _torus_distance(n, n[0] // 2, n[1] // 2, n[2] // 2, 9.0)
    return (d >= 2.0) & (d <= 5.0)


KNOWN_SHAPES = {
    "disc": (disc, (1, 0)),
    "ring": (ring, (1, 1)),
    "two_rings": (two_rings, (2, 2)),
    "figure_eight": (figure_eight, (1, 2)),
    "ball": (ball, (1, 0, 0)),
    "shell": (shell, (1, 0, 1)),
    "solid_torus": (solid_torus, (1, 1, 0)),
    "hollow_torus": (hollow_torus, (1, 2, 1)),
}
