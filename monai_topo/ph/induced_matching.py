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

import functools
from dataclasses import dataclass

import numpy as np
from numba import njit

from monai_topo.ph.unionfind import descending_order



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


@dataclass(frozen=True)
class Layout:
    """The cells of one grid shape and construction, in tie order, with their boundaries.

    Cells are named by their flat Khalimsky index; vertices and top cells also get a compact id,
    their position in ``vertices`` / ``tops`` (``len(tops)`` is the outside). Tie order: for the
    V-construction Betti-Matching-3D's cube index (lower corner voxel, then the type: the spanned
    axis of an edge, the normal axis of a square), for the T-construction the flat index.
    """

    kshape: tuple[int, ...]
    vertices: np.ndarray  # 0-cells
    tops: np.ndarray  # top cells
    edges: np.ndarray  # 1-cells
    edge_ends: np.ndarray  # (n, 2) vertex ids
    facets: np.ndarray  # (d-1)-cells
    facet_ends: np.ndarray  # (n, 2) top ids on either side, len(tops) beyond the grid
    square_edges: np.ndarray  # (n, 4) positions in ``edges`` of each facet's edges (volumes only)


def _cells_in_tie_order(kshape: tuple[int, ...], dim: int, full: bool) -> np.ndarray:
    coords = np.indices(kshape).reshape(len(kshape), -1)
    odd = coords % 2
    flat = np.flatnonzero(odd.sum(0) == dim)
    if full:
        return flat
    odd = odd[:, flat]
    # the type: the spanned axis of an edge, the normal axis of a (d-1)-cell (0 for the others)
    kind = np.argmax(odd, 0) if dim == 1 else (np.argmin(odd, 0) if dim == len(kshape) - 1 else 0)
    corner = np.ravel_multi_index(tuple(coords[:, flat] // 2), tuple((n + 1) // 2 for n in kshape))
    return flat[np.argsort(corner * 3 + kind, kind="stable")]


@functools.lru_cache(maxsize=16)
def layout(kshape: tuple[int, ...], full: bool) -> Layout:
    """The :class:`Layout` of a Khalimsky grid ``kshape`` (cached: a batch shares one)."""
    ndim = len(kshape)
    size = int(np.prod(kshape))
    strides = [int(np.prod(kshape[a + 1:])) for a in range(ndim)]
    vertices = _cells_in_tie_order(kshape, 0, full)
    tops = _cells_in_tie_order(kshape, ndim, full)
    edges = _cells_in_tie_order(kshape, 1, full)
    facets = edges if ndim == 2 else _cells_in_tie_order(kshape, ndim - 1, full)
    compact = np.full(size, -1, np.int64)
    for cells in (vertices, tops, edges, facets):
        compact[cells] = np.arange(cells.size)
    edge_coords = np.stack(np.unravel_index(edges, kshape))
    axis = np.argmax(edge_coords % 2, 0)
    step = np.asarray(strides)[axis]
    edge_ends = np.stack([compact[edges - step], compact[edges + step]], 1).astype(np.int32)
    facet_coords = np.stack(np.unravel_index(facets, kshape))
    axis = np.argmin(facet_coords % 2, 0)
    step = np.asarray(strides)[axis]
    position = facet_coords[axis, np.arange(facets.size)]
    outside = tops.size
    below = np.where(position > 0, compact[np.clip(facets - step, 0, size - 1)], outside)
    above = np.where(position < np.asarray(kshape)[axis] - 1, compact[np.clip(facets + step, 0, size - 1)], outside)
    facet_ends = np.stack([below, above], 1).astype(np.int32)
    square_edges = np.zeros((0, 4), np.int32)
    if ndim == 3:
        faces = []
        for a in range(3):
            spanned = facet_coords[a] % 2 == 1
            for sign in (-1, 1):
                faces.append(np.where(spanned, facets + sign * strides[a], -1))
        faces = np.stack(faces, 1)
        faces = np.sort(faces, 1)[:, 2:]  # the two unused axes gave -1
        square_edges = compact[faces].astype(np.int32)
    return Layout(tuple(kshape), vertices, tops, edges, edge_ends, facets, facet_ends, square_edges)


@njit(cache=True, nogil=True)
def _find(parent, i):
    """Root of ``i``, halving the path on the way."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True, nogil=True)
def _younger(values, a, b):
    """Of two roots of the primal union-find, the one that dies (lower value, then higher id)."""
    if values[a] != values[b]:
        return a if values[a] < values[b] else b
    return a if a > b else b


@njit(cache=True, nogil=True)
def _younger_dual(values, a, b, outside):
    """Of two roots of the dual union-find, the one that dies (higher value, then lower id)."""
    if a == outside or b == outside:
        return b if a == outside else a
    if values[a] != values[b]:
        return a if values[a] > values[b] else b
    return a if a < b else b


# --- dimension 0 and the top dimension: union-find ----------------------------------------------


@njit(cache=True, nogil=True)
def bars_dim0(vertex_values, edge_values, edge_ends, order):
    """Positive-length bars of dimension 0 along the edges in ``order`` (elder rule).

    Returns ``(births, deaths, bar_of_birth)``: vertex ids, edge positions, and the bar born at
    each vertex (``-1``: none).
    """
    parent = np.arange(vertex_values.size, dtype=np.int32)
    bar_of_birth = np.full(vertex_values.size, -1, np.int64)
    births = np.empty(vertex_values.size, np.int64)
    deaths = np.empty(vertex_values.size, np.int64)
    n = 0
    for e in order:
        ru, rv = _find(parent, edge_ends[e, 0]), _find(parent, edge_ends[e, 1])
        if ru == rv:
            continue
        young = _younger(vertex_values, ru, rv)
        parent[young] = rv if young == ru else ru
        if vertex_values[young] != edge_values[e]:
            births[n], deaths[n] = young, e
            bar_of_birth[young] = n
            n += 1
    return births[:n], deaths[:n], bar_of_birth


@njit(cache=True, nogil=True)
def match_dim0(vertex_c, edge_c, edge_ends, order_c, vertex_p, vertex_g, bar_p, bar_g):
    """Pairs ``(bar of P, bar of G)`` matched through the bars of ``C`` in dimension 0.

    The union-finds of ``P`` and ``G`` follow ``C``'s merges, so their roots are each ``C``-component's
    eldest vertex by ``P``'s (``G``'s) values: the image bar that ``C``'s edge kills is born at the
    younger of the two.
    """
    parent_c = np.arange(vertex_c.size, dtype=np.int32)
    parent_p = np.arange(vertex_c.size, dtype=np.int32)
    parent_g = np.arange(vertex_c.size, dtype=np.int32)
    matches = np.empty((vertex_c.size, 2), np.int64)
    n = 0
    for e in order_c:
        u, v = edge_ends[e, 0], edge_ends[e, 1]
        ru, rv = _find(parent_c, u), _find(parent_c, v)
        if ru == rv:
            continue
        young = _younger(vertex_c, ru, rv)
        parent_c[young] = rv if young == ru else ru
        pu, pv = _find(parent_p, u), _find(parent_p, v)
        young_p = _younger(vertex_p, pu, pv)
        parent_p[young_p] = pv if young_p == pu else pu
        gu, gv = _find(parent_g, u), _find(parent_g, v)
        young_g = _younger(vertex_g, gu, gv)
        parent_g[young_g] = gv if young_g == gu else gu
        if vertex_c[young] != edge_c[e] and bar_p[young_p] >= 0 and bar_g[young_g] >= 0:
            matches[n, 0], matches[n, 1] = bar_p[young_p], bar_g[young_g]
            n += 1
    return matches[:n]


@njit(cache=True, nogil=True)
def bars_top(top_values, facet_values, top_c, facet_ends, order):
    """Positive-length bars of the top dimension, and where they land in ``C``.

    The facets in ``order`` (the image's own) are read backwards: union-find of the top cells and
    the outside, the outside eldest, and ``C``'s union-find (values ``top_c``) following each
    merge. Returns ``(births, deaths, bar_of_c)``: facet positions, top ids, and for each root of
    ``C`` the bar whose death merged into it (``-1``: none).
    """
    outside = top_values.size
    parent = np.arange(outside + 1, dtype=np.int32)
    parent_c = np.arange(outside + 1, dtype=np.int32)
    bar_of_c = np.full(outside + 1, -1, np.int64)
    births = np.empty(outside, np.int64)
    deaths = np.empty(outside, np.int64)
    n = 0
    for i in range(order.size - 1, -1, -1):
        f = order[i]
        a, b = facet_ends[f, 0], facet_ends[f, 1]
        ra, rb = _find(parent, a), _find(parent, b)
        if ra == rb:
            continue
        young = _younger_dual(top_values, ra, rb, outside)
        parent[young] = rb if young == ra else ra
        ca, cb = _find(parent_c, a), _find(parent_c, b)
        young_c = _younger_dual(top_c, ca, cb, outside)
        parent_c[young_c] = cb if young_c == ca else ca
        if facet_values[f] != top_values[young]:
            births[n], deaths[n] = f, young
            bar_of_c[young_c] = n
            n += 1
    return births[:n], deaths[:n], bar_of_c


@njit(cache=True, nogil=True)
def match_top(top_c, facet_c, facet_ends, order_c, bar_p_of_c, bar_g_of_c):
    """Pairs ``(bar of P, bar of G)`` matched through the bars of ``C`` in the top dimension."""
    outside = top_c.size
    parent = np.arange(outside + 1, dtype=np.int32)
    matches = np.empty((outside, 2), np.int64)
    n = 0
    for i in range(order_c.size - 1, -1, -1):
        f = order_c[i]
        ra, rb = _find(parent, facet_ends[f, 0]), _find(parent, facet_ends[f, 1])
        if ra == rb:
            continue
        young = _younger_dual(top_c, ra, rb, outside)
        parent[young] = rb if young == ra else ra
        if facet_c[f] != top_c[young] and bar_p_of_c[young] >= 0 and bar_g_of_c[young] >= 0:
            matches[n, 0], matches[n, 1] = bar_p_of_c[young], bar_g_of_c[young]
            n += 1
    return matches[:n]


@njit(cache=True, nogil=True)
def creators(top_values, facet_ends, order):
    """Mask of the facets that join two dual components (they create a top-dimensional class).

    Their boundary columns reduce to zero in the middle dimension: the clearing of its reduction.
    """
    outside = top_values.size
    parent = np.arange(outside + 1, dtype=np.int32)
    created = np.zeros(order.size, np.bool_)
    for i in range(order.size - 1, -1, -1):
        f = order[i]
        ra, rb = _find(parent, facet_ends[f, 0]), _find(parent, facet_ends[f, 1])
        if ra == rb:
            continue
        young = _younger_dual(top_values, ra, rb, outside)
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
def reduce_squares(row_rank, square_edges, column_order, cleared):
    """Persistence pairs of the edges (rows) and squares (columns) of a volume.

    ``row_rank[e]``: the position of edge ``e`` in the rows' order; the squares are taken in
    ``column_order``, skipping ``cleared`` ones. A column's pivot is its latest row. Returns
    ``(edge positions, square positions)`` of the pairs.
    """
    edge_of_rank = np.empty(row_rank.size, np.int64)
    edge_of_rank[row_rank] = np.arange(row_rank.size)
    owner = np.full(row_rank.size, -1, np.int64)  # rank of a pivot -> stored column
    start = np.zeros(column_order.size + 1, np.int64)
    pool = np.empty(4 * column_order.size + 16, np.int64)
    used = 0
    n_stored = 0
    pair_edges = np.empty(column_order.size, np.int64)
    pair_squares = np.empty(column_order.size, np.int64)
    n_pairs = 0
    work = np.empty(16, np.int64)
    spare = np.empty(16, np.int64)
    for s in column_order:
        if cleared[s]:
            continue
        for i in range(4):
            work[i] = row_rank[square_edges[s, i]]
        length = 4
        work[:length].sort()
        while length > 0:
            j = owner[work[length - 1]]
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
        pair_edges[n_pairs], pair_squares[n_pairs] = edge_of_rank[pivot], s
        n_pairs += 1
    return pair_edges[:n_pairs], pair_squares[:n_pairs]


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


def _middle_dimension(cells: Layout, edge, edge_order, square, square_order, cube):
    """Bars of dimension 1 of ``P`` and ``G`` and their matching, by reduction (see the module notes).

    Lists hold ``P``, ``G``, ``C``. An image bar is matched to ``P``'s bar born at the same edge,
    and to ``C``'s bar that dies at the same square.
    """
    ranks = []
    for order in edge_order:
        rank = np.empty(order.size, np.int64)
        rank[order] = np.arange(order.size)
        ranks.append(rank)
    cleared = [creators(cube[i], cells.facet_ends, square_order[i]) for i in range(3)]
    own = [reduce_squares(ranks[i], cells.square_edges, square_order[i], cleared[i]) for i in range(3)]
    images = [reduce_squares(ranks[i], cells.square_edges, square_order[2], cleared[2]) for i in range(2)]
    bars, bar_of_birth = [], []
    for i in range(2):
        births, deaths = own[i]
        keep = edge[i][births] != square[i][deaths]
        births, deaths = births[keep], deaths[keep]
        bars += [cells.edges[births], cells.facets[deaths]]
        lookup = np.full(edge[i].size, -1, np.int64)
        lookup[births] = np.arange(births.size)
        bar_of_birth.append(lookup)
    births_c, deaths_c = own[2]
    deaths_c = deaths_c[edge[2][births_c] != square[2][deaths_c]]
    matched = []
    for i in range(2):
        image_birth = np.full(square[i].size, -1, np.int64)
        image_birth[images[i][1]] = images[i][0]
        birth = image_birth[deaths_c]
        matched.append(np.where(birth >= 0, bar_of_birth[i][np.maximum(birth, 0)], -1))
    both = (matched[0] >= 0) & (matched[1] >= 0)
    return (*bars, np.stack([matched[0][both], matched[1][both]], 1))


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
    >>> ring = np.zeros((9, 9), np.float32)
    >>> ring[1:8, 1:7] = 1
    >>> ring[3:6, 2:5] = 0                      # a ring with a 3x3 hole
    >>> m = betti_matching(np.roll(ring, 1, axis=1), ring)
    >>> [len(a) for a in m.matched], [len(a) for a in m.unmatched_prediction]    # the holes overlap
    ([0, 1], [0, 0])
    >>> m = betti_matching(ring, np.ones_like(ring))
    >>> m.unmatched_prediction[1]               # born at rim voxel (6, 4), dies at hole voxel (5, 4)
    array([[58, 49]])
    """
    if prediction.shape != target.shape or prediction.ndim not in (2, 3):
        raise ValueError(f"prediction and target must be 2D or 3D maps of one shape, got {prediction.shape} "
                         f"and {target.shape}.")
    full = connectivity == "full"
    ndim = prediction.ndim
    maxdim = ndim - 1 if maxdim is None else maxdim
    dtype = np.result_type(prediction.dtype, target.dtype, np.float32)
    maps = [np.ascontiguousarray(a, dtype) for a in (prediction, target)]
    maps.append(np.maximum(maps[0], maps[1]))  # the comparison image C
    grids = [khalimsky_values(m, full) for m in maps]
    cells = layout(grids[0].shape, full)
    values = [g.reshape(-1) for g in grids]
    no_ties = np.zeros(0, np.int64)
    vertex = [v[cells.vertices] for v in values]
    edge = [v[cells.edges] for v in values]
    edge_order = [descending_order(e, no_ties) for e in edge]
    per_dim = []  # bars of P and G as (birth cells, death cells), and the matched pairs of bars
    bp, dp, bar_p = bars_dim0(vertex[0], edge[0], cells.edge_ends, edge_order[0])
    bg, dg, bar_g = bars_dim0(vertex[1], edge[1], cells.edge_ends, edge_order[1])
    matches = match_dim0(vertex[2], edge[2], cells.edge_ends, edge_order[2], vertex[0], vertex[1], bar_p, bar_g)
    per_dim.append((cells.vertices[bp], cells.edges[dp], cells.vertices[bg], cells.edges[dg], matches))
    top = [v[cells.tops] for v in values]
    facet = edge if ndim == 2 else [v[cells.facets] for v in values]
    facet_order = edge_order if ndim == 2 else [descending_order(f, no_ties) for f in facet]
    if maxdim >= 1 and ndim == 3:
        per_dim.append(_middle_dimension(cells, edge, edge_order, facet, facet_order, top))
    if maxdim >= ndim - 1:
        bp, dp, p_of_c = bars_top(top[0], facet[0], top[2], cells.facet_ends, facet_order[0])
        bg, dg, g_of_c = bars_top(top[1], facet[1], top[2], cells.facet_ends, facet_order[1])
        matches = match_top(top[2], facet[2], cells.facet_ends, facet_order[2], p_of_c, g_of_c)
        per_dim.append((cells.facets[bp], cells.tops[dp], cells.facets[bg], cells.tops[dg], matches))

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
