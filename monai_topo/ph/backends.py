"""Adapters that run a real cubical-PH library and return critical cells.

Every adapter takes the *sub-level* filtration ``f = -x`` (a float64 numpy array, C order) and
returns three int64 arrays of equal length: homology dimension, flat C-order index of the
birth cell and flat index of the death cell (``-1`` for the essential class).  Values are
gathered later from the caller's tensor, so only the pairing comes from the library.

``"full"`` connectivity is the T-construction (pixels are top-dimensional cells, so pixels
sharing a corner are adjacent); ``"face"`` is the V-construction (pixels are vertices joined
along faces only).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

PairTable = tuple[np.ndarray, np.ndarray, np.ndarray]


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


BACKENDS: dict[str, Callable[[np.ndarray, int, str], PairTable]] = {
    "cripser": cripser_pairs,
    "gudhi": gudhi_pairs,
}
# CubicalRipser is an order of magnitude faster than gudhi on every workload in
# benchmarks/bench_ph.py, so "auto" resolves to it.
AUTO_BACKEND = "cripser"
