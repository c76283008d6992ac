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
- dimension 1 of a volume: the pairs of the boundary matrix of the squares for ``P``, ``G``, ``C``
  (rows and columns in the image's order) and for the two images (rows in ``P``'s or ``G``'s order,
  columns in ``C``'s: Bauer & Schmahl's image persistence), computed as those of its
  anti-transpose (persistent cohomology, the coboundaries of the edges reduced), edges that merge
  components in the rows' order cleared first.

The essential component is left out, as in Betti-Matching-3D. Critical cells are reported as
voxels: the first voxel, in C order, of the cell's voxels that has its value.
"""

from __future__ import annotations

import functools
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from numba import njit

from monai_topo.ph.unionfind import descending_order, insert_sorted

# --- the Khalimsky grid -------------------------------------------------------------------------


def khalimsky_values(x: np.ndarray, full: bool) -> np.ndarray:
    """Values of every cell of the cubical complex of ``x`` (2D or 3D), on the Khalimsky grid.

    V-construction (``full=False``): grid ``2n - 1`` per axis, a cell's value is the minimum over
    its voxels; T-construction: grid ``2n + 1``, the maximum over the voxels around it.
    """
    x3 = x.reshape((1,) * (3 - x.ndim) + x.shape)
    kshape = tuple(2 * n + 1 if full else 2 * n - 1 for n in x.shape)
    return _khalimsky(x3, full, x.ndim == 2).reshape(kshape)


@njit(cache=True, nogil=True)
def _voxel_span(n, full):
    """Per Khalimsky coordinate of an axis of ``n`` voxels, the first and last voxel of its cells."""
    k = 2 * n + 1 if full else 2 * n - 1
    first = np.empty(k, np.int64)
    last = np.empty(k, np.int64)
    for c in range(k):
        if full:  # odd: the voxel (c - 1) / 2; even: those on either side, inside the image
            first[c] = (c - 1) // 2 if c & 1 else max(c // 2 - 1, 0)
            last[c] = (c - 1) // 2 if c & 1 else min(c // 2, n - 1)
        else:  # even: the voxel c / 2; odd: (c - 1) / 2 and (c + 1) / 2
            first[c] = c // 2
            last[c] = (c + 1) // 2
    return first, last


@njit(cache=True, nogil=True)
def _khalimsky(x, full, flat):
    nz, ny, nx = x.shape
    (fz, lz), (fy, ly), (fx, lx) = _voxel_span(nz, full), _voxel_span(ny, full), _voxel_span(nx, full)
    if flat:  # a 2D image: no Khalimsky axis along the padding
        fz, lz = np.zeros(1, np.int64), np.zeros(1, np.int64)
    out = np.empty((fz.size, fy.size, fx.size), x.dtype)
    for cz in range(fz.size):
        for cy in range(fy.size):
            for cx in range(fx.size):
                value = x[fz[cz], fy[cy], fx[cx]]
                for z in range(fz[cz], lz[cz] + 1):
                    for y in range(fy[cy], ly[cy] + 1):
                        for v in range(fx[cx], lx[cx] + 1):
                            value = max(value, x[z, y, v]) if full else min(value, x[z, y, v])
                out[cz, cy, cx] = value
    return out


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
    edge_squares: np.ndarray  # (n, 4) positions in ``facets`` of each edge's squares, -1: none (volumes)
    square_edges: np.ndarray  # (n, 4) positions in ``edges`` of each square's edges (volumes)


@njit(cache=True, nogil=True)
def _cells_in_tie_order(kshape, first_axis, dim, full):
    """Flat indices of the cells of dimension ``dim`` in tie order (see :class:`Layout`).

    ``kshape`` is a 3-tuple whose axes before ``first_axis`` are padding (size 1).
    """
    kz, ky, kx = kshape
    ndim = 3 - first_axis
    out = np.empty(kz * ky * kx, np.int64)
    n = 0
    if full:  # the flat index: memory order
        for z in range(kz):
            for y in range(ky):
                for x in range(kx):
                    if (z & 1) + (y & 1) + (x & 1) == dim:
                        out[n] = (z * ky + y) * kx + x
                        n += 1
        return out[:n]
    # by lower corner voxel, then type: the spanned axis of an edge, the normal axis of a (d-1)-cell
    kinds = ndim if dim == 1 or dim == ndim - 1 else 1
    for z in range(0, kz, 2):
        for y in range(0, ky, 2):
            for x in range(0, kx, 2):
                corner = (z, y, x)
                for kind in range(kinds):
                    cell = 0
                    inside = True
                    for a in range(3):
                        local = a - first_axis
                        if dim == 0 or local < 0:
                            spans = False
                        elif dim == ndim:
                            spans = True
                        elif dim == 1:
                            spans = local == kind
                        else:
                            spans = local != kind
                        coordinate = corner[a] + 1 if spans else corner[a]
                        inside = inside and coordinate < kshape[a]
                        cell = cell * kshape[a] + coordinate
                    if inside:
                        out[n] = cell
                        n += 1
    return out[:n]


@njit(cache=True, nogil=True)
def _adjacent(cells, kshape, first_axis, compact, faces, fill):
    """Compact ids of the cells one step away along each axis that a cell spans (``faces``) or
    does not span (cofaces), ``fill`` beyond the grid: ``(n, 2 * number of such axes)``, the lower
    step first."""
    strides = (kshape[1] * kshape[2], kshape[2], 1)
    width = 0
    c0 = cells[0]
    for a in range(first_axis, 3):
        if ((c0 // strides[a]) % kshape[a] & 1 == 1) == faces:
            width += 2
    out = np.empty((cells.size, width), np.int32)
    for i in range(cells.size):
        c = cells[i]
        j = 0
        for a in range(first_axis, 3):
            coordinate = (c // strides[a]) % kshape[a]
            if (coordinate & 1 == 1) != faces:
                continue
            for sign in (-1, 1):
                inside = 0 <= coordinate + sign < kshape[a]
                out[i, j] = compact[c + sign * strides[a]] if inside else fill
                j += 1
    return out


@functools.lru_cache(maxsize=4)
def layout(kshape: tuple[int, ...], full: bool) -> Layout:
    """The :class:`Layout` of a Khalimsky grid ``kshape`` (cached: a batch shares one)."""
    ndim = len(kshape)
    k3 = (1,) * (3 - ndim) + tuple(kshape)
    first = 3 - ndim
    vertices, tops, edges = (_cells_in_tie_order(k3, first, dim, full) for dim in (0, ndim, 1))
    facets = edges if ndim == 2 else _cells_in_tie_order(k3, first, ndim - 1, full)
    compact = np.full(int(np.prod(kshape)), -1, np.int64)
    for cells in (vertices, tops, edges, facets):
        compact[cells] = np.arange(cells.size)
    edge_ends = _adjacent(edges, k3, first, compact, True, -1)
    facet_ends = _adjacent(facets, k3, first, compact, False, tops.size)  # beyond the grid: the outside
    none = np.zeros((0, 4), np.int32)
    edge_squares = _adjacent(edges, k3, first, compact, False, -1) if ndim == 3 else none
    square_edges = _adjacent(facets, k3, first, compact, True, -1) if ndim == 3 else none
    return Layout(tuple(kshape), vertices, tops, edges, edge_ends, facets, facet_ends, edge_squares, square_edges)


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

    Returns ``(births, deaths, bar_of_birth, merged)``: vertex ids, edge positions, the bar born at
    each vertex (``-1``: none) and the mask of the edges that merge (zero-length bars included:
    they are never pivot rows of dimension 1, its clearing).
    """
    parent = np.arange(vertex_values.size, dtype=np.int32)
    bar_of_birth = np.full(vertex_values.size, -1, np.int64)
    births = np.empty(vertex_values.size, np.int64)
    deaths = np.empty(vertex_values.size, np.int64)
    merged = np.zeros(order.size, np.bool_)
    n = 0
    components = vertex_values.size
    for e in order:
        if components == 1:  # the rest of the edges merge nothing
            break
        ru, rv = _find(parent, edge_ends[e, 0]), _find(parent, edge_ends[e, 1])
        if ru == rv:
            continue
        components -= 1
        merged[e] = True
        young = _younger(vertex_values, ru, rv)
        parent[young] = rv if young == ru else ru
        if vertex_values[young] != edge_values[e]:
            births[n], deaths[n] = young, e
            bar_of_birth[young] = n
            n += 1
    return births[:n], deaths[:n], bar_of_birth, merged


@njit(cache=True, nogil=True)
def match_dim0(vertex_c, edge_c, edge_ends, order_c, vertex_p, vertex_g, bar_p, bar_g):
    """Pairs ``(bar of P, bar of G)`` matched through the bars of ``C`` in dimension 0, and ``C``'s
    merging edges (as :func:`bars_dim0`).

    The union-finds of ``P`` and ``G`` follow ``C``'s merges, so their roots are each ``C``-component's
    eldest vertex by ``P``'s (``G``'s) values: the image bar that ``C``'s edge kills is born at the
    younger of the two.
    """
    parent_c = np.arange(vertex_c.size, dtype=np.int32)
    parent_p = np.arange(vertex_c.size, dtype=np.int32)
    parent_g = np.arange(vertex_c.size, dtype=np.int32)
    matches = np.empty((vertex_c.size, 2), np.int64)
    merged = np.zeros(order_c.size, np.bool_)
    n = 0
    components = vertex_c.size
    for e in order_c:
        if components == 1:
            break
        u, v = edge_ends[e, 0], edge_ends[e, 1]
        ru, rv = _find(parent_c, u), _find(parent_c, v)
        if ru == rv:
            continue
        components -= 1
        merged[e] = True
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
    return matches[:n], merged


@njit(cache=True, nogil=True)
def bars_top(top_values, facet_values, top_c, facet_ends, order):
    """Positive-length bars of the top dimension, and where they land in ``C``.

    The facets in ``order`` (the image's own) are read backwards: union-find of the top cells and
    the outside, the outside eldest, and ``C``'s union-find (values ``top_c``) following each
    merge. Returns ``(births, deaths, bar_of_c, created)``: facet positions, top ids, for each root
    of ``C`` the bar whose death merged into it (``-1``: none), and the mask of the facets that
    merge (they create a top-dimensional class: in the middle dimension their boundaries reduce
    to zero, its clearing).
    """
    outside = top_values.size
    parent = np.arange(outside + 1, dtype=np.int32)
    parent_c = np.arange(outside + 1, dtype=np.int32)
    bar_of_c = np.full(outside + 1, -1, np.int64)
    created = np.zeros(order.size, np.bool_)
    births = np.empty(outside, np.int64)
    deaths = np.empty(outside, np.int64)
    n = 0
    components = outside + 1
    for i in range(order.size - 1, -1, -1):
        if components == 1:  # all top cells joined the outside
            break
        f = order[i]
        a, b = facet_ends[f, 0], facet_ends[f, 1]
        ra, rb = _find(parent, a), _find(parent, b)
        if ra == rb:
            continue
        components -= 1
        young = _younger_dual(top_values, ra, rb, outside)
        parent[young] = rb if young == ra else ra
        created[f] = True
        ca, cb = _find(parent_c, a), _find(parent_c, b)
        young_c = _younger_dual(top_c, ca, cb, outside)
        parent_c[young_c] = cb if young_c == ca else ca
        if facet_values[f] != top_values[young]:
            births[n], deaths[n] = f, young
            bar_of_c[young_c] = n
            n += 1
    return births[:n], deaths[:n], bar_of_c, created


@njit(cache=True, nogil=True)
def match_top(top_c, facet_c, facet_ends, order_c, bar_p_of_c, bar_g_of_c):
    """Pairs ``(bar of P, bar of G)`` matched through the bars of ``C`` in the top dimension, and
    ``C``'s creating facets (as :func:`bars_top`)."""
    outside = top_c.size
    parent = np.arange(outside + 1, dtype=np.int32)
    matches = np.empty((outside, 2), np.int64)
    created = np.zeros(order_c.size, np.bool_)
    n = 0
    components = outside + 1
    for i in range(order_c.size - 1, -1, -1):
        if components == 1:
            break
        f = order_c[i]
        ra, rb = _find(parent, facet_ends[f, 0]), _find(parent, facet_ends[f, 1])
        if ra == rb:
            continue
        components -= 1
        young = _younger_dual(top_c, ra, rb, outside)
        parent[young] = rb if young == ra else ra
        created[f] = True
        if facet_c[f] != top_c[young] and bar_p_of_c[young] >= 0 and bar_g_of_c[young] >= 0:
            matches[n, 0], matches[n, 1] = bar_p_of_c[young], bar_g_of_c[young]
            n += 1
    return matches[:n], created


# --- dimension 1 of a volume: column reduction --------------------------------------------------


@njit(cache=True, nogil=True)
def reduce_table(table):
    """Pivot pairs of a Z/2 matrix of at most four entries per column, by column reduction.

    ``table[k]`` holds column ``k``'s row indices, ascending, ``-1`` first where it has fewer
    (an empty column is skipped: cleared). A column's pivot is its largest row; it is reduced by
    adding the column that owns its pivot. Most columns are their own reduced form (apparent and
    emergent pairs): a pivot owned by one of those points back at its row of ``table``
    (``-2 - k``), and only the others are stored, as ascending runs in one pool. Returns
    ``(columns, pivots)`` of the pairs.
    """
    n_columns, width = table.shape
    n_rows = 0
    for k in range(n_columns):
        n_rows = max(n_rows, table[k, width - 1] + 1)
    owner = np.full(n_rows, -1, np.int32)  # pivot row -> stored column, or -2 - unreduced column
    start = np.zeros(1024, np.int64)
    pool = np.empty(4096, np.int32)
    n_stored = 0
    pair_columns = np.empty(n_columns, np.int64)
    pair_pivots = np.empty(n_columns, np.int64)
    n_pairs = 0
    work = np.empty(64, np.int32)
    spare = np.empty(64, np.int32)
    for k in range(n_columns):
        length = 0
        for i in range(width):
            if table[k, i] >= 0:
                work[length] = table[k, i]
                length += 1
        reduced = False
        while length > 0:
            j = owner[work[length - 1]]
            if j == -1:
                break
            if j < -1:  # owned by an unreduced column: its entries are in the table
                other, lo, hi = table[-2 - j], 0, width
            else:
                other, lo, hi = pool, start[j], start[j + 1]
            if spare.size < length + hi - lo:
                spare = np.empty(2 * (length + hi - lo), np.int32)
            length = _symmetric_difference(work, length, other, lo, hi, spare)
            work, spare = spare, work
            reduced = True
        if length == 0:
            continue
        pivot = work[length - 1]
        if reduced:
            owner[pivot] = n_stored
            used = start[n_stored]
            if used + length > pool.size:
                grown = np.empty(2 * (used + length), np.int32)
                grown[:used] = pool[:used]
                pool = grown
            pool[used:used + length] = work[:length]
            n_stored += 1
            if n_stored + 1 > start.size:
                bigger = np.zeros(2 * start.size, np.int64)
                bigger[:start.size] = start
                start = bigger
            start[n_stored] = used + length
        else:
            owner[pivot] = -2 - k
        pair_columns[n_pairs], pair_pivots[n_pairs] = k, pivot
        n_pairs += 1
    return pair_columns[:n_pairs], pair_pivots[:n_pairs]


@njit(cache=True, nogil=True)
def _symmetric_difference(a, length, b, lo, hi, out):
    """Merge of the ascending runs ``a[:length]`` and ``b[lo:hi]`` into ``out``, equal entries
    cancelling (Z/2 addition), ``-1`` entries of ``b`` skipped; returns the length. Written out
    by index: slices would cost reference counting."""
    while lo < hi and b[lo] < 0:
        lo += 1
    i, j, n = 0, lo, 0
    while i < length and j < hi:
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
    while i < length:
        out[n] = a[i]
        i += 1
        n += 1
    while j < hi:
        out[n] = b[j]
        j += 1
        n += 1
    return n


@njit(cache=True, nogil=True)
def incidence_table(column_of, neighbours, rank, flip, cleared):
    """A :func:`reduce_table` table: cell ``c`` is column ``column_of[c]`` and holds ``rank`` of its
    neighbours (``neighbours[c]``, ``-1``: none), reversed (``len(rank) - 1 - rank``) with ``flip``;
    ``cleared`` cells get empty columns. Cells are read in memory order, where their neighbours'
    ranks lie close by: only the writes of the columns are scattered."""
    n, width = column_of.size, neighbours.shape[1]
    last = rank.size - 1
    table = np.full((n, width), -1, np.int32)
    ranks = np.empty(width, np.int32)
    for c in range(n):
        if cleared[c]:
            continue
        length = 0
        for i in range(width):
            if neighbours[c, i] >= 0:
                r = last - rank[neighbours[c, i]] if flip else rank[neighbours[c, i]]
                length = insert_sorted(ranks, length, r)
        k = column_of[c]
        for i in range(length):
            table[k, width - length + i] = ranks[i]
    return table


def pairs_by_cohomology(row_order, row_rank, column_order, column_rank, edge_squares, cleared):
    """Pairs ``(edge positions, square positions)`` of the boundary matrix of a volume's squares,
    rows in ``row_order`` and columns in ``column_order`` (``*_rank``: their inverses).

    They are those of its anti-transpose, whose lower-left ranks are the same (de Silva, Morozov
    & Vejdemo-Johansson, 2011): the coboundaries of the edges from the latest, with the squares
    from the latest (row ``0``). ``cleared`` edges, those that merge components in the rows'
    order, are never pivot rows (which rows are does not depend on the columns' order).
    """
    column_of = row_order.size - 1 - row_rank
    columns, pivots = reduce_table(incidence_table(column_of, edge_squares, column_rank, True, cleared))
    return row_order[row_order.size - 1 - columns], column_order[column_order.size - 1 - pivots]


def pairs_by_homology(row_order, row_rank, column_order, column_rank, square_edges, cleared):
    """The pairs of :func:`pairs_by_cohomology` by reducing the boundaries of the squares;
    ``cleared`` squares, those that create a cavity in the columns' order, reduce to zero."""
    columns, pivots = reduce_table(incidence_table(column_rank, square_edges, row_rank, False, cleared))
    return row_order[pivots], column_order[columns]


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


@njit(cache=True, nogil=True)
def cell_voxels(cells, kshape, shape, x, kvalues, full):
    """The voxel that carries each cell's value: the first, in C order, of its voxels with that value.

    ``kshape`` and ``shape`` are 3-tuples (``(1, ...)`` for a 2D image); ``x`` and ``kvalues`` flat.
    """
    out = np.empty(cells.size, np.int64)
    for i in range(cells.size):
        c = cells[i]
        cz, rest = divmod(c, kshape[1] * kshape[2])
        cy, cx = divmod(rest, kshape[2])
        target = kvalues[c]
        out[i] = -1
        for oz in range(2):
            for oy in range(2):
                for ox in range(2):
                    v = 0
                    ok = True
                    for coord, o, n in ((cz, oz, shape[0]), (cy, oy, shape[1]), (cx, ox, shape[2])):
                        if full:  # odd: the voxel (c - 1) / 2; even: c / 2 - 1 and c / 2
                            a = (coord - 1) // 2 if coord & 1 else coord // 2 - 1 + o
                            ok = ok and (coord & 1 == 0 or o == 0)
                        else:  # even: c / 2; odd: (c - 1) / 2 and (c + 1) / 2
                            a = coord // 2 if coord & 1 == 0 else (coord - 1) // 2 + o
                            ok = ok and (coord & 1 == 1 or o == 0)
                        ok = ok and 0 <= a < n
                        v = v * n + a
                    if ok and out[i] < 0 and x[v] == target:
                        out[i] = v
    return out


class _Sides:
    """Per-map state of one Betti matching; lists hold ``P``, ``G`` and ``C`` in that order."""

    def __init__(self, maps: list[np.ndarray], full: bool):
        self.maps = maps
        self.grids = [khalimsky_values(m, full) for m in maps]
        self.values = [g.reshape(-1) for g in self.grids]
        self.cells = layout(self.grids[0].shape, full)
        self.volume = maps[0].ndim == 3


def _sorted_side(sides: _Sides, i: int) -> dict:
    """Values and orders of one map's cells (its own filtration)."""
    cells, v = sides.cells, sides.values[i]
    no_ties = np.zeros(0, np.int64)
    side = {"vertex": v[cells.vertices], "edge": v[cells.edges], "top": v[cells.tops]}
    side["edge_order"] = descending_order(side["edge"], no_ties)
    if sides.volume:
        side["facet"] = v[cells.facets]
        side["facet_order"] = descending_order(side["facet"], no_ties)
        lowest, highest = sides.maps[i].min(), sides.maps[i].max()
        side["mask"] = bool(((sides.maps[i] == lowest) | (sides.maps[i] == highest)).all())
        for kind in ("edge", "facet"):
            order = side[kind + "_order"]
            side[kind + "_rank"] = np.empty(order.size, np.int32)
            side[kind + "_rank"][order] = np.arange(order.size, dtype=np.int32)
    else:
        side["facet"], side["facet_order"] = side["edge"], side["edge_order"]
    return side


def _own_bars(sides: _Sides, side: dict, top_c: np.ndarray, middle: bool) -> dict:
    """Bars of ``P`` or ``G`` in every dimension (cells in the Layout's terms)."""
    cells = sides.cells
    side["dim0"] = bars_dim0(side["vertex"], side["edge"], cells.edge_ends, side["edge_order"])
    side["merged"] = side["dim0"][3]
    side["top_bars"] = bars_top(side["top"], side["facet"], top_c, cells.facet_ends, side["facet_order"])
    side["created"] = side["top_bars"][3]
    if middle:
        births, deaths = middle_pairs(cells, side, side)
        keep = side["edge"][births] != side["facet"][deaths]
        side["middle"] = births[keep], deaths[keep]
    return side


def middle_pairs(cells: Layout, rows: dict, columns: dict) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of the boundary matrix of the squares, rows in the order of one map and columns in
    that of another (or the same): by cohomology, or by homology where the rows' map is a mask
    (two values), whose long plateaus make cohomology need about thirteen times more column additions
    (measured on a 64x128x128 noisy prediction against its mask)."""
    if rows["mask"]:
        pairs, neighbours, cleared = pairs_by_homology, cells.square_edges, columns["created"]
    else:
        pairs, neighbours, cleared = pairs_by_cohomology, cells.edge_squares, rows["merged"]
    return pairs(rows["edge_order"], rows["edge_rank"], columns["facet_order"], columns["facet_rank"], neighbours, cleared)


def _middle_matches(sides: _Sides, p: dict, g: dict, c: dict, run) -> np.ndarray:
    """Matched bars of dimension 1 of a volume: an image bar is matched to the bar of ``P`` born at
    the same edge, and to the bar of ``C`` that dies at the same square."""
    cells = sides.cells
    image_p, image_g, own_c = run(middle_pairs, [(cells, rows, c) for rows in (p, g, c)])
    births_c, deaths_c = own_c
    deaths_c = deaths_c[c["edge"][births_c] != c["facet"][deaths_c]]
    matched = []
    for side, (births, deaths) in ((p, image_p), (g, image_g)):
        image_birth = np.full(cells.facets.size, -1, np.int64)
        image_birth[deaths] = births
        bar_of_birth = np.full(cells.edges.size, -1, np.int64)
        bar_of_birth[side["middle"][0]] = np.arange(side["middle"][0].size)
        birth = image_birth[deaths_c]
        matched.append(np.where(birth >= 0, bar_of_birth[np.maximum(birth, 0)], -1))
    both = (matched[0] >= 0) & (matched[1] >= 0)
    return np.stack([matched[0][both], matched[1][both]], 1)


def _sequential(function, jobs):
    return [function(*job) for job in jobs]


def betti_matching(prediction: np.ndarray, target: np.ndarray, connectivity: str = "full",
                   maxdim: int | None = None, pool: Executor | None = None) -> BettiMatching:
    """Betti matching of the super-level filtrations of two maps of the same shape.

    Parameters
    ----------
    prediction, target : numpy.ndarray, shape (H, W) or (D, H, W)
        Float maps (probabilities), compared through ``max(prediction, target)``.
    connectivity : {"full", "face"}
        ``"face"`` is Betti-Matching-3D's V-construction; ``"full"`` the T-construction.
    maxdim : int, optional
        Highest homology dimension; default all.
    pool : concurrent.futures.Executor, optional
        Threads for the independent stages (the three maps' sorts and bars, the reductions of a
        volume); default sequential. Worth it for one large image; a batch is better split by item.

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
    sides = _Sides(maps, full)
    cells = sides.cells
    middle = ndim == 3 and maxdim >= 1
    run = _sequential if pool is None else (lambda f, jobs: [job.result() for job in [pool.submit(f, *j) for j in jobs]])
    p, g, c = run(_sorted_side, [(sides, i) for i in range(3)])
    p, g = run(_own_bars, [(sides, p, c["top"], middle), (sides, g, c["top"], middle)])
    (bp, dp, bar_p, _), (bg, dg, bar_g, _) = p["dim0"], g["dim0"]
    matches, c["merged"] = match_dim0(c["vertex"], c["edge"], cells.edge_ends, c["edge_order"], p["vertex"], g["vertex"], bar_p, bar_g)
    per_dim = [(cells.vertices[bp], cells.edges[dp], cells.vertices[bg], cells.edges[dg], matches)]
    (bp, dp, p_of_c, _), (bg, dg, g_of_c, _) = p["top_bars"], g["top_bars"]
    top_matches, c["created"] = match_top(c["top"], c["facet"], cells.facet_ends, c["facet_order"], p_of_c, g_of_c)
    if middle:
        (bp1, dp1), (bg1, dg1) = p["middle"], g["middle"]
        per_dim.append((cells.edges[bp1], cells.facets[dp1], cells.edges[bg1], cells.facets[dg1],
                        _middle_matches(sides, p, g, c, run)))
    if maxdim >= ndim - 1:
        per_dim.append((cells.facets[bp], cells.tops[dp], cells.facets[bg], cells.tops[dg], top_matches))
    per_dim = per_dim[:maxdim + 1]

    kshape = (1,) * (3 - ndim) + sides.grids[0].shape
    shape = (1,) * (3 - ndim) + maps[0].shape
    matched, lonely_p, lonely_g = [], [], []
    for bp, dp, bg, dg, matches in per_dim:
        vp, vg = ([cell_voxels(a, kshape, shape, maps[i].reshape(-1), sides.values[i], full) for a in ends]
                  for i, ends in ((0, (bp, dp)), (1, (bg, dg))))
        mp, mg = matches[:, 0], matches[:, 1]
        matched.append(np.stack([vp[0][mp], vp[1][mp], vg[0][mg], vg[1][mg]], 1).reshape(-1, 4))
        free_p = np.ones(bp.size, bool)
        free_p[mp] = False
        free_g = np.ones(bg.size, bool)
        free_g[mg] = False
        lonely_p.append(np.stack([vp[0][free_p], vp[1][free_p]], 1).reshape(-1, 2))
        lonely_g.append(np.stack([vg[0][free_g], vg[1][free_g]], 1).reshape(-1, 2))
    return BettiMatching(matched, lonely_p, lonely_g)
