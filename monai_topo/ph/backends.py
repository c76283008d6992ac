"""Adapters that run a cubical-PH engine and return critical cells.

Every adapter takes the *sub-level* filtration ``f = -x`` (a float64 numpy array, C order) and
returns three int64 arrays of equal length: homology dimension, flat C-order index of the
birth cell and flat index of the death cell (``-1`` for the essential class).  Values are
gathered later from the caller's tensor, so only the pairing comes from the engine.
:func:`batch_pairs` runs one adapter over a stack of images; the ``"unionfind"`` engine
(:mod:`monai_topo.ph.unionfind`) takes the stack in one call, in its own dtype.

``"full"`` connectivity is the T-construction (pixels are top-dimensional cells, so pixels
sharing a corner are adjacent); ``"face"`` is the V-construction (pixels are vertices joined
along faces only).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from monai_topo.ph import unionfind

PairTable = tuple[np.ndarray, np.ndarray, np.ndarray]
BatchTable = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""``dims, births, deaths`` of several images concatenated, and the number of rows of each image."""


def _empty_table() -> PairTable:
    return (np.empty(0, np.int64),) * 3


def cripser_pairs(f: np.ndarray, maxdim: int, connectivity: str) -> PairTable:
    """Critical cells of the sub-level filtration ``f`` from CubicalRipser."""
    import cripser

    compute = cripser.computePH_T if connectivity == "full" else cripser.computePH
    table = compute(f, maxdim=maxdim, location="yes")
    if len(table) == 0:
        return _empty_table()
    ndim = f.ndim
    dims = table[:, 0].astype(np.int64)
    birth_xyz = table[:, 3 : 3 + ndim].astype(np.int64)
    death_xyz = table[:, 6 : 6 + ndim].astype(np.int64)
    birth = np.ravel_multi_index(tuple(birth_xyz.T), f.shape)
    essential = death_xyz[:, 0] < 0
    death = np.full(len(table), -1, np.int64)
    death[~essential] = np.ravel_multi_index(tuple(death_xyz[~essential].T), f.shape)
    keep = dims <= maxdim
    return dims[keep], birth[keep], death[keep]


def gudhi_pairs(f: np.ndarray, maxdim: int, connectivity: str) -> PairTable:
    """Critical cells of the sub-level filtration ``f`` from gudhi's ``CubicalComplex``."""
    import gudhi

    # gudhi flattens in Fortran order; handing it the transposed view makes its flat
    # indices C-order indices of ``f`` (homology does not care about axis order).
    if connectivity == "full":
        complex_ = gudhi.CubicalComplex(top_dimensional_cells=f.T)
        complex_.compute_persistence(homology_coeff_field=2, min_persistence=0)
        regular, essential = complex_.cofaces_of_persistence_pairs()
    else:
        complex_ = gudhi.CubicalComplex(vertices=f.T)
        complex_.compute_persistence(homology_coeff_field=2, min_persistence=0)
        regular, essential = complex_.vertices_of_persistence_pairs()
    dims, births, deaths = [], [], []
    for dim, pairs in enumerate(regular[: maxdim + 1]):
        pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        dims.append(np.full(len(pairs), dim, np.int64))
        births.append(pairs[:, 0])
        deaths.append(pairs[:, 1])
    for dim, cells in enumerate(essential[: maxdim + 1]):
        cells = np.asarray(cells, np.int64).ravel()
        dims.append(np.full(len(cells), dim, np.int64))
        births.append(cells)
        deaths.append(np.full(len(cells), -1, np.int64))
    if not dims:
        return _empty_table()
    return np.concatenate(dims), np.concatenate(births), np.concatenate(deaths)


def unionfind_pairs(f: np.ndarray, maxdim: int, connectivity: str) -> PairTable:
    """Critical cells of the sub-level filtration ``f`` from :mod:`monai_topo.ph.unionfind`."""
    return unionfind.batch_pairs(np.negative(f)[None], maxdim, connectivity == "full", 1)[:3]


BACKENDS: dict[str, Callable[[np.ndarray, int, str], PairTable]] = {
    "cripser": cripser_pairs,
    "gudhi": gudhi_pairs,
    "unionfind": unionfind_pairs,
}
# On every workload of benchmarks/bench_ph.py the union-find engine is the fastest (see
# docs/benchmarks.md) and it gives the same diagrams, so "auto" resolves to it.
AUTO_BACKEND = "unionfind"


def batch_pairs(images: np.ndarray, maxdim: int, connectivity: str, backend: str, num_workers: int) -> BatchTable:
    """Critical cells of every image of a stack with one backend, on ``num_workers`` threads.

    Parameters
    ----------
    images : numpy.ndarray of float32 or float64, shape (n, *spatial)
        Probability maps (super-level filtration, not negated), C-contiguous.
    maxdim : int
        Highest homology dimension.
    connectivity : {"full", "face"}
    backend : str
        A key of :data:`BACKENDS`.
    num_workers : int
        Threads; the libraries release the GIL.
    """
    if backend == "unionfind":
        return unionfind.batch_pairs(images, maxdim, connectivity == "full", num_workers)
    compute = BACKENDS[backend]

    def run(image: np.ndarray) -> PairTable:
        return compute(np.negative(image, dtype=np.float64), maxdim, connectivity)

    workers = max(1, min(num_workers, len(images)))
    if workers == 1:
        tables = [run(image) for image in images]
    else:
        with ThreadPoolExecutor(workers) as pool:
            tables = list(pool.map(run, images))
    counts = np.array([len(table[0]) for table in tables], np.int64)
    return (*(np.concatenate([table[i] for table in tables]) for i in range(3)), counts)
