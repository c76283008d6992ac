"""Betti matching: induced matchings of two barcodes through their comparison image (numba).

Stucki et al. (ICML 2023; 3D: Betti-Matching-3D) match the bars of a prediction ``P`` and a
ground truth ``G`` through the *comparison image* whose filtration contains both of theirs. For
our super-level filtrations that image is ``C = max(P, G)``: ``{P >= t}`` and ``{G >= t}`` both lie
in ``{C >= t}``. Each inclusion induces a matching of barcodes through its image module
``im(H(P >= t) -> H(C >= t))``: a bar of ``P`` and a bar of the image are matched when they are born
at the same cell, a bar of the image and a bar of ``C`` when they die at the same cell. A bar of
``P`` and a bar of ``G`` are *Betti-matched* when they are matched to the same bar of ``C``.

Everything here is a pairing of cells in a total order, so it is computed exactly on the cubical
complex laid out on the *Khalimsky grid* (cell ``c`` has coordinates ``c_i``; odd coordinates are
the axes it spans, its dimension is their number):

- ``"face"``, the V-construction (Betti-Matching-3D's): voxels are the vertices, at even
  coordinates ``2v``; a cell's value is the minimum over its voxels.
- ``"full"``, the T-construction: voxels are the top cells, at odd coordinates ``2v + 1``; a
  cell's value is the maximum over the voxels around it.

Cells are ordered by decreasing value, ties by a fixed cell index (Betti-Matching-3D's for the
V-construction: lower corner voxel, then the cell's type, so that equal inputs give equal
pairings), and the pairings are:

- dimension 0: union-find over the vertices along the edges (elder rule: higher value, then lower
  index); the image bar killed by an edge of ``C`` is born at the younger, by ``P``'s values, of the
  two merging components' eldest vertices;
- the top dimension: union-find of the top cells and the outside along the (d-1)-cells in reverse
  order (Alexander duality), the union-find of ``C`` following each merge of ``P``;
- dimension 1 of a volume: column reduction of the boundary matrix of the squares, for ``P``,
  ``G``, ``C`` (rows and columns in the image's order) and for the two images (rows in ``P``'s or
  ``G``'s order, columns in ``C``'s: Bauer & Schmahl's image persistence), squares that create a
  cavity cleared first.

The essential component is left out, as in Betti-Matching-3D. Critical cells are reported as
voxels: the first voxel, in C order, of the cell's voxels that has its value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from monai_topo.ph.unionfind import descending_order

OUTSIDE = -2  # the outside of the image in the dual union-find (a top cell present from the start)


# --- the Khalimsky grid -------------------------------------------------------------------------


def khalimsky_values(x: np.ndarray, full: bool) -> np.ndarray:
    """Values of every cell of the cubical complex of ``x`` (2D or 3D), on the Khalimsky grid.

    V-construction (``full=False``): grid ``2n - 1`` per axis, a cell's value is the minimum over
    its voxels; T-construction: grid ``2n + 1``, the maximum over the voxels around it. Both are
    separable, so they are built axis by axis.
    """
    k = x
    for axis in range(x.ndim):
        n = k.shape[axis]
        shape = list(k.shape)
        shape[axis] = 2 * n + 1 if full else 2 * n - 1
        grid = np.empty(shape, x.dtype)
        lead = (slice(None),) * axis
        if full:
            grid[lead + (slice(1, None, 2),)] = k
            padded = np.concatenate([k.take([0], axis), k, k.take([-1], axis)], axis)
            grid[lead + (slice(0, None, 2),)] = np.maximum(padded.take(np.arange(n + 1), axis),
                                                           padded.take(np.arange(1, n + 2), axis))
        else:
            grid[lead + (slice(0, None, 2),)] = k
            grid[lead + (slice(1, None, 2),)] = np.minimum(k.take(np.arange(n - 1), axis), k.take(np.arange(1, n), axis))
        k = grid
    return k


@njit(cache=True, nogil=True)
def _coords(c, kshape):
    z, rest = divmod(c, kshape[1] * kshape[2])
    y, x = divmod(rest, kshape[2])
    return z, y, x


@njit(cache=True, nogil=True)
def cells_of_dim(kshape, dim, full, flat_z):
    """Flat Khalimsky indices of the cells of dimension ``dim``, in tie order.

    Tie order: for the V-construction, Betti-Matching-3D's cube index (lower corner voxel, then
    type: the spanned axis of an edge, the normal axis of a square); for the T-construction the
    flat index. ``flat_z``: a 2D image laid out as ``(1, H, W)``, whose first axis spans nothing.
    """
    kd, kh, kw = kshape
    cells = np.empty(kd * kh * kw, np.int64)
    n = 0
    if full:
        for c in range(kd * kh * kw):
            z, y, x = _coords(c, kshape)
            odd = (0 if flat_z else z & 1) + (y & 1) + (x & 1)
            if odd == dim:
                cells[n] = c
                n += 1
        return cells[:n]
    nd, nh, nw = (kd + 1) // 2, (kh + 1) // 2, (kw + 1) // 2
    for vz in range(nd):
        for vy in range(nh):
            for vx in range(nw):
                for t in range(3):  # spanned or normal axis, in the order of the axes
                    if dim == 0 or (dim == 3 - int(flat_z)):
                        if t > 0:
                            break
                        oz, oy, ox = (0, 0, 0) if dim == 0 else (0 if flat_z else 1, 1, 1)
                    elif dim == 1:
                        if flat_z and t == 0:
                            continue
                        oz, oy, ox = int(t == 0), int(t == 1), int(t == 2)
                    else:  # squares of a volume
                        oz, oy, ox = int(t != 0), int(t != 1), int(t != 2)
                    z, y, x = 2 * vz + oz, 2 * vy + oy, 2 * vx + ox
                    if z < kd and y < kh and x < kw:
                        cells[n] = (z * kh + y) * kw + x
                        n += 1
    return cells[:n]


@njit(cache=True, nogil=True)
def _faces(c, kshape, flat_z, out):
    """The facets of cell ``c`` (one step along each spanned axis), written to ``out``; their count."""
    z, y, x = _coords(c, kshape)
    strides = (kshape[1] * kshape[2], kshape[2], 1)
    coords = (z, y, x)
    n = 0
    for a in range(3):
        if (a == 0 and flat_z) or coords[a] & 1 == 0:
            continue
        out[n] = c - strides[a]
        out[n + 1] = c + strides[a]
        n += 2
    return n


@njit(cache=True, nogil=True)
def _cofaces_of_facet(c, kshape, flat_z):
    """The two top cells on either side of a (d-1)-cell, ``OUTSIDE`` beyond the grid."""
    z, y, x = _coords(c, kshape)
    strides = (kshape[1] * kshape[2], kshape[2], 1)
    coords = (z, y, x)
    for a in range(3):
        if (a == 0 and flat_z) or coords[a] & 1 == 1:
            continue
        below = c - strides[a] if coords[a] > 0 else OUTSIDE
        above = c + strides[a] if coords[a] < kshape[a] - 1 else OUTSIDE
        return below, above
    return OUTSIDE, OUTSIDE


@njit(cache=True, nogil=True)
def _find(parent, i):
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


@njit(cache=True, nogil=True)
def _younger(values, a, b):
    """Of two roots of the primal union-find, the one that dies (lower value, then higher index)."""
    if values[a] != values[b]:
        return a if values[a] < values[b] else b
    return a if a > b else b


@njit(cache=True, nogil=True)
def _younger_dual(values, a, b, outside):
    """Of two roots of the dual union-find, the one that dies (higher value, then lower index)."""
    if a == outside or b == outside:
        return b if a == outside else a
    if values[a] != values[b]:
        return a if values[a] > values[b] else b
    return a if a < b else b


# --- dimension 0 and the top dimension: union-find ----------------------------------------------


@njit(cache=True, nogil=True)
def _edge_ends(e, kshape, flat_z, ends):
    _faces(e, kshape, flat_z, ends)
    return ends[0], ends[1]


@njit(cache=True, nogil=True)
def bars_dim0(values, edges, kshape, flat_z):
    """Positive-length bars of dimension 0: ``(births, deaths)`` cells, and the bar born at each vertex."""
    parent = np.arange(values.size)
    bar_of_birth = np.full(values.size, -1, np.int64)
    births = np.empty(edges.size, np.int64)
    deaths = np.empty(edges.size, np.int64)
    ends = np.empty(6, np.int64)
    n = 0
    for e in edges:
        u, v = _edge_ends(e, kshape, flat_z, ends)
        ru, rv = _find(parent, u), _find(parent, v)
        if ru == rv:
            continue
        young = _younger(values, ru, rv)
        parent[young] = rv if young == ru else ru
        if values[young] != values[e]:
            births[n], deaths[n] = young, e
            bar_of_birth[young] = n
            n += 1
    return births[:n], deaths[:n], bar_of_birth


@njit(cache=True, nogil=True)
def match_dim0(values_c, values_p, values_g, edges_c, kshape, flat_z, bar_p, bar_g):
    """Pairs ``(bar of P, bar of G)`` matched through the bars of ``C`` in dimension 0.

    The union-finds of ``P`` and ``G`` follow ``C``'s merges, so their roots are each ``C``-component's
    eldest vertex by ``P``'s (``G``'s) values: the image bar that ``C``'s edge kills is born at the
    younger of the two.
    """
    parent_c = np.arange(values_c.size)
    parent_p = np.arange(values_c.size)
    parent_g = np.arange(values_c.size)
    matches = np.empty((edges_c.size, 2), np.int64)
    ends = np.empty(6, np.int64)
    n = 0
    for e in edges_c:
        u, v = _edge_ends(e, kshape, flat_z, ends)
        ru, rv = _find(parent_c, u), _find(parent_c, v)
        if ru == rv:
            continue
        young = _younger(values_c, ru, rv)
        parent_c[young] = rv if young == ru else ru
        pu, pv = _find(parent_p, u), _find(parent_p, v)
        young_p = _younger(values_p, pu, pv)
        parent_p[young_p] = pv if young_p == pu else pu
        gu, gv = _find(parent_g, u), _find(parent_g, v)
        young_g = _younger(values_g, gu, gv)
        parent_g[young_g] = gv if young_g == gu else gu
        if values_c[young] != values_c[e] and bar_p[young_p] >= 0 and bar_g[young_g] >= 0:
            matches[n, 0], matches[n, 1] = bar_p[young_p], bar_g[young_g]
            n += 1
    return matches[:n]


@njit(cache=True, nogil=True)
def bars_top(values, values_c, facets, kshape, flat_z):
    """Positive-length bars of the top dimension, and the bar of ``C``'s image each one maps to.

    ``facets`` in the image's own order, read backwards. Returns ``(births, deaths, bar_of_c_root)``:
    the (d-1)-cell and the top cell of each bar, and for each top cell of ``C`` the bar whose
    death merges into it in ``C``'s union-find (``-1``: none).
    """
    outside = values.size
    parent = np.arange(values.size + 1)
    parent_c = np.arange(values.size + 1)
    bar_of_c = np.full(values.size + 1, -1, np.int64)
    births = np.empty(facets.size, np.int64)
    deaths = np.empty(facets.size, np.int64)
    n = 0
    for i in range(facets.size - 1, -1, -1):
        f = facets[i]
        a, b = _cofaces_of_facet(f, kshape, flat_z)
        a = outside if a == OUTSIDE else a
        b = outside if b == OUTSIDE else b
        ra, rb = _find(parent, a), _find(parent, b)
        if ra == rb:
            continue
        young = _younger_dual(values, ra, rb, outside)
        parent[young] = rb if young == ra else ra
        ca, cb = _find(parent_c, a), _find(parent_c, b)
        young_c = _younger_dual(values_c, ca, cb, outside)
        parent_c[young_c] = cb if young_c == ca else ca
        if values[f] != values[young]:
            births[n], deaths[n] = f, young
            bar_of_c[young_c] = n
            n += 1
    return births[:n], deaths[:n], bar_of_c


@njit(cache=True, nogil=True)
def match_top(values_c, facets_c, kshape, flat_z, bar_p_of_c, bar_g_of_c):
    """Pairs ``(bar of P, bar of G)`` matched through the bars of ``C`` in the top dimension."""
    outside = values_c.size
    parent = np.arange(values_c.size + 1)
    matches = np.empty((facets_c.size, 2), np.int64)
    n = 0
    for i in range(facets_c.size - 1, -1, -1):
        f = facets_c[i]
        a, b = _cofaces_of_facet(f, kshape, flat_z)
        a = outside if a == OUTSIDE else a
        b = outside if b == OUTSIDE else b
        ra, rb = _find(parent, a), _find(parent, b)
        if ra == rb:
            continue
        young = _younger_dual(values_c, ra, rb, outside)
        parent[young] = rb if young == ra else ra
        if values_c[f] != values_c[young] and bar_p_of_c[young] >= 0 and bar_g_of_c[young] >= 0:
            matches[n, 0], matches[n, 1] = bar_p_of_c[young], bar_g_of_c[young]
            n += 1
    return matches[:n]


@njit(cache=True, nogil=True)
def creators(values, facets, kshape, flat_z):
    """Mask of the (d-1)-cells that join two dual components (they create a top-dimensional class).

    Their boundary columns reduce to zero in the middle dimension (the clearing of its reduction).
    """
    outside = values.size
    parent = np.arange(values.size + 1)
    created = np.zeros(values.size, np.bool_)
    for i in range(facets.size - 1, -1, -1):
        f = facets[i]
        a, b = _cofaces_of_facet(f, kshape, flat_z)
        a = outside if a == OUTSIDE else a
        b = outside if b == OUTSIDE else b
        ra, rb = _find(parent, a), _find(parent, b)
        if ra == rb:
            continue
        young = _younger_dual(values, ra, rb, outside)
        parent[young] = rb if young == ra else ra
        created[f] = True
    return created


# --- dimension 1 of a volume: column reduction --------------------------------------------------


@njit(cache=True, nogil=True)
def _symmetric_difference(a, b, out):
    """``a xor b`` of two ascending int arrays into ``out``; returns the count."""
    i = j = n = 0
    while i < a.size and j < b.size:
        if a[i] < b[j]:
            out[n] = a[i]
            i += 1
            n += 1
        elif a[i] > b[j]:
            out[n] = b[j]
            j += 1
            n += 1
        else:
            i += 1
            j += 1
    while i < a.size:
        out[n] = a[i]
        i += 1
        n += 1
    while j < b.size:
        out[n] = b[j]
        j += 1
        n += 1
    return n


@njit(cache=True, nogil=True)
def reduce_squares(row_rank, columns, cleared, kshape):
    """Persistence pairs of edges (rows) and squares (columns) of a volume.

    ``row_rank[e]``: the position of edge ``e`` in the rows' order; ``columns``: the squares in the
    columns' order. A column's pivot is its latest row. Returns ``(pivot rows, columns)`` as cells.
    """
    n_rows = 0
    for r in row_rank:
        n_rows = max(n_rows, r + 1)
    edge_of_rank = np.full(n_rows, -1, np.int64)
    for e in range(row_rank.size):
        if row_rank[e] >= 0:
            edge_of_rank[row_rank[e]] = e
    owner = np.full(n_rows, -1, np.int64)  # rank of a pivot -> stored column
    start = np.zeros(columns.size + 1, np.int64)
    pool = np.empty(4 * columns.size + 16, np.int64)
    used = 0
    n_stored = 0
    pair_rows = np.empty(columns.size, np.int64)
    pair_columns = np.empty(columns.size, np.int64)
    n_pairs = 0
    faces = np.empty(6, np.int64)
    work = np.empty(16, np.int64)
    spare = np.empty(16, np.int64)
    for s in columns:
        if cleared[s]:
            continue
        m = _faces(s, kshape, False, faces)
        for i in range(m):
            work[i] = row_rank[faces[i]]
        length = m
        work[:length].sort()
        while length > 0:
            pivot = work[length - 1]
            j = owner[pivot]
            if j < 0:
                break
            other = pool[start[j]:start[j + 1]]
            if spare.size < length + other.size:
                spare = np.empty(2 * (length + other.size), np.int64)
            length = _symmetric_difference(work[:length], other, spare)
            work, spare = spare, work
        if length == 0:
            continue
        pivot = work[length - 1]
        owner[pivot] = n_stored
        if used + length > pool.size:
            grown = np.empty(2 * (used + length), np.int64)
            grown[:used] = pool[:used]
            pool = grown
        pool[used:used + length] = work[:length]
        used += length
        n_stored += 1
        start[n_stored] = used
        pair_rows[n_pairs], pair_columns[n_pairs] = edge_of_rank[pivot], s
        n_pairs += 1
    return pair_rows[:n_pairs], pair_columns[:n_pairs]


def _ranks(cells_in_order: np.ndarray, size: int) -> np.ndarray:
    rank = np.full(size, -1, np.int64)
    rank[cells_in_order] = np.arange(cells_in_order.size)
    return rank


# --- one pair of images ------------------------------------------------------------------------


@dataclass(frozen=True)
class BettiMatching:
    """The Betti matching of a prediction and a target, as critical voxels (flat C-order indices).

    For each homology dimension ``d`` (list position):

    - ``matched[d]``: int64 ``(m, 4)``: prediction birth, prediction death, target birth,
      target death voxels of each matched pair of bars;
    - ``unmatched_prediction[d]``, ``unmatched_target[d]``: ``(u, 2)`` birth and death voxels of
      the bars left unmatched.

    The values of the bars are those of the maps at these voxels (birth >= death).
    """

    matched: list[np.ndarray]
    unmatched_prediction: list[np.ndarray]
    unmatched_target: list[np.ndarray]


def _cell_voxels(cells: np.ndarray, kgrid: np.ndarray, x: np.ndarray, full: bool) -> np.ndarray:
    """The voxel that carries each cell's value: the first, in C order, of its voxels with that value."""
    if cells.size == 0:
        return np.zeros(0, np.int64)
    coords = np.unravel_index(cells, kgrid.shape)
    target = kgrid.reshape(-1)[cells]
    best = np.full(cells.size, -1, np.int64)
    ndim = x.ndim
    for offsets in np.ndindex(*(2,) * ndim):
        voxel = []
        ok = np.ones(cells.size, bool)
        for c, o, n in zip(coords, offsets, x.shape):
            if full:  # odd: the voxel (c - 1) / 2; even: c / 2 - 1 and c / 2
                v = np.where(c % 2 == 1, (c - 1) // 2 + 0 * o, c // 2 - 1 + o)
                ok &= (c % 2 == 0) | (o == 0)
            else:  # even: c / 2; odd: (c - 1) / 2 and (c + 1) / 2
                v = np.where(c % 2 == 0, c // 2, (c - 1) // 2 + o)
                ok &= (c % 2 == 1) | (o == 0)
            ok &= (v >= 0) & (v < n)
            voxel.append(np.clip(v, 0, n - 1))
        flat = np.ravel_multi_index(tuple(voxel), x.shape)
        hit = ok & (best < 0) & (x.reshape(-1)[flat] == target)
        best[hit] = flat[hit]
    return best


def betti_matching(prediction: np.ndarray, target: np.ndarray, connectivity: str = "full",
                   maxdim: int | None = None) -> BettiMatching:
    """Betti matching of the super-level filtrations of two maps of the same shape.

    Parameters
    ----------
    prediction, target : numpy.ndarray, shape (H, W) or (D, H, W)
        Float maps (probabilities), compared through ``max(prediction, target)``.
    connectivity : {"full", "face"}
        ``"face"`` is Betti-Matching-3D's V-construction; ``"full"`` the T-construction.
    maxdim : int, optional
        Highest homology dimension; default all.

    Returns
    -------
    BettiMatching

    Examples
    --------
    >>> import numpy as np
    >>> ring = np.zeros((7, 7), np.float32)
    >>> ring[1:6, 1:6] = 1
    >>> ring[3, 3] = 0
    >>> shifted = np.roll(ring, 1, axis=1)
    >>> m = betti_matching(ring, shifted)
    >>> [len(a) for a in m.matched], [len(a) for a in m.unmatched_prediction]
    ([0, 1], [0, 0])
    """
    if prediction.shape != target.shape or prediction.ndim not in (2, 3):
        raise ValueError(f"prediction and target must be 2D or 3D maps of one shape, got {prediction.shape} "
                         f"and {target.shape}.")
    full = connectivity == "full"
    ndim = prediction.ndim
    maxdim = ndim - 1 if maxdim is None else maxdim
    dtype = np.result_type(prediction.dtype, target.dtype, np.float32)
    maps = [np.ascontiguousarray(a, dtype) for a in (prediction, target)]
    maps.append(np.maximum(maps[0], maps[1]))
    grids = [khalimsky_values(m, full) for m in maps]
    kshape = grids[0].shape if ndim == 3 else (1, *grids[0].shape)
    flat_z = ndim == 2
    values = [g.reshape(-1) for g in grids]
    size = values[0].size
    by_dim = {}

    def ordered(dim):
        if dim not in by_dim:
            cells = cells_of_dim(kshape, dim, full, flat_z)
            by_dim[dim] = (cells, [cells[descending_order(v[cells], np.zeros(0, np.int64))] for v in values])
        return by_dim[dim][1]

    per_dim = []  # (births_p, deaths_p, births_g, deaths_g, matches)
    # dimension 0
    edges = ordered(1)
    bp, dp, bar_p = bars_dim0(values[0], edges[0], kshape, flat_z)
    bg, dg, bar_g = bars_dim0(values[1], edges[1], kshape, flat_z)
    per_dim.append((bp, dp, bg, dg, match_dim0(values[2], values[0], values[1], edges[2], kshape, flat_z,
                                                bar_p, bar_g)))
    top = ndim - 1
    if maxdim >= 1 and ndim == 3:
        squares = ordered(2)
        edge_ranks = [_ranks(e, size) for e in edges]
        cleared = [creators(values[i], squares[i], kshape, flat_z) for i in range(3)]
        own = [reduce_squares(edge_ranks[i], squares[i], cleared[i], kshape) for i in range(3)]
        images = [reduce_squares(edge_ranks[i], squares[2], cleared[2], kshape) for i in range(2)]
        bars = []
        for i in range(2):
            rows, cols = own[i]
            keep = values[i][rows] != values[i][cols]
            bars.append((rows[keep], cols[keep]))
        bar_of_edge = []
        for births, _ in bars:
            lookup = np.full(size, -1, np.int64)
            lookup[births] = np.arange(births.size)
            bar_of_edge.append(lookup)
        image_birth_of_death = []
        for rows, cols in images:
            lookup = np.full(size, -1, np.int64)
            lookup[cols] = rows
            image_birth_of_death.append(lookup)
        rows_c, cols_c = own[2]
        cols_c = cols_c[values[2][rows_c] != values[2][cols_c]]
        birth_p, birth_g = image_birth_of_death[0][cols_c], image_birth_of_death[1][cols_c]
        ok = (birth_p >= 0) & (birth_g >= 0)
        mp, mg = bar_of_edge[0][birth_p[ok]], bar_of_edge[1][birth_g[ok]]
        ok2 = (mp >= 0) & (mg >= 0)
        per_dim.append((*bars[0], *bars[1], np.stack([mp[ok2], mg[ok2]], 1)))
    if maxdim >= top:
        facets = ordered(top)
        bp, dp, p_of_c = bars_top(values[0], values[2], facets[0], kshape, flat_z)
        bg, dg, g_of_c = bars_top(values[1], values[2], facets[1], kshape, flat_z)
        per_dim.append((bp, dp, bg, dg, match_top(values[2], facets[2], kshape, flat_z, p_of_c, g_of_c)))

    matched, lonely_p, lonely_g = [], [], []
    for bp, dp, bg, dg, matches in per_dim:
        vp = [_cell_voxels(c, grids[0], maps[0], full) for c in (bp, dp)]
        vg = [_cell_voxels(c, grids[1], maps[1], full) for c in (bg, dg)]
        mp, mg = matches[:, 0], matches[:, 1]
        matched.append(np.stack([vp[0][mp], vp[1][mp], vg[0][mg], vg[1][mg]], 1).reshape(-1, 4))
        free_p = np.ones(bp.size, bool)
        free_p[mp] = False
        free_g = np.ones(bg.size, bool)
        free_g[mg] = False
        lonely_p.append(np.stack([vp[0][free_p], vp[1][free_p]], 1).reshape(-1, 2))
        lonely_g.append(np.stack([vg[0][free_g], vg[1][free_g]], 1).reshape(-1, 2))
    return BettiMatching(matched, lonely_p, lonely_g)
