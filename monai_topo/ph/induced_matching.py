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
  components in the rows' order cleared first (by homology where the rows' map is a mask); the
  apparent pairs are found in one pass, the few other columns reduced.

The essential component is left out, as in Betti-Matching-3D. Critical cells are reported as
voxels: the first voxel, in C order, of the cell's voxels that has its value.
"""

from __future__ import annotations

import functools
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass

import numpy as np
from numba import njit

from monai_topo.ph.unionfind import (
    descending_order,
    grown,
    heap_push,
    inverse_permutation,
    pop_pivot,
    store_reduced_column,
)

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
    """The grid of :func:`khalimsky_values`, one axis at a time: the minimum (maximum) over a box
    of voxels is that over its rows of the minima along the rows."""
    nz, ny, nx = x.shape
    (fz, lz), (fy, ly), (fx, lx) = _voxel_span(nz, full), _voxel_span(ny, full), _voxel_span(nx, full)
    along_x = np.empty((nz, ny, fx.size), x.dtype)
    for z in range(nz):
        for y in range(ny):
            for c in range(fx.size):
                u, v = x[z, y, fx[c]], x[z, y, lx[c]]
                along_x[z, y, c] = max(u, v) if full else min(u, v)
    along_y = np.empty((nz, fy.size, fx.size), x.dtype)
    for z in range(nz):
        for c in range(fy.size):
            for i in range(fx.size):
                u, v = along_x[z, fy[c], i], along_x[z, ly[c], i]
                along_y[z, c, i] = max(u, v) if full else min(u, v)
    if flat:  # a 2D image: no Khalimsky axis along the padding
        return along_y
    out = np.empty((fz.size, fy.size, fx.size), x.dtype)
    for c in range(fz.size):
        for j in range(fy.size):
            for i in range(fx.size):
                u, v = along_y[fz[c], j, i], along_y[lz[c], j, i]
                out[c, j, i] = max(u, v) if full else min(u, v)
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

    def of(self, kind: str) -> np.ndarray:
        """The cells of one kind: ``"vertex"``, ``"edge"``, ``"facet"`` or ``"top"``."""
        return {"vertex": self.vertices, "edge": self.edges, "facet": self.facets, "top": self.tops}[kind]


@njit(cache=True, nogil=True)
def _cells_in_tie_order(kshape, first_axis, dim, full):
    """Flat indices of the cells of dimension ``dim`` in tie order (see :class:`Layout`).

    ``kshape`` is a 3-tuple whose axes before ``first_axis`` are padding (size 1).
    """
    kz, ky, kx = kshape
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
    for z in range(0, kz, 2):
        for y in range(0, ky, 2):
            for x in range(0, kx, 2):
                for kind in range(_kinds(first_axis, dim)):
                    sz, sy, sx = _spanned_axes(first_axis, dim, kind)
                    if z + sz < kz and y + sy < ky and x + sx < kx:
                        out[n] = ((z + sz) * ky + y + sy) * kx + x + sx
                        n += 1
    return out[:n]


@njit(cache=True, nogil=True)
def _kinds(first_axis, dim):
    """Number of types of V-construction cells of dimension ``dim`` at one corner voxel."""
    ndim = 3 - first_axis
    return ndim if dim == 1 or dim == ndim - 1 else 1


@njit(cache=True, nogil=True)
def _spans(first_axis, dim, kind, a):
    """Whether a V-construction cell of dimension ``dim`` and type ``kind`` spans axis ``a`` (of
    three): an edge its ``kind``-th axis, a (d-1)-cell all but that one, a top cell all."""
    ndim, local = 3 - first_axis, a - first_axis
    if local < 0 or dim == 0:
        return 0
    if dim == ndim:
        return 1
    if dim == 1:
        return int(local == kind)
    return int(local != kind)


@njit(cache=True, nogil=True)
def _spanned_axes(first_axis, dim, kind):
    """:func:`_spans` of the three axes."""
    return _spans(first_axis, dim, kind, 0), _spans(first_axis, dim, kind, 1), _spans(first_axis, dim, kind, 2)


@njit(cache=True, nogil=True)
def _face_values(x, first_axis, dim):
    """Values of the V-construction's cells of dimension ``dim`` in tie order: the minimum over
    their voxels, read off ``x`` (3D, padded in front for an image) without the Khalimsky grid."""
    nz, ny, nx = x.shape
    kinds = _kinds(first_axis, dim)
    spans = np.empty((kinds, 3), np.int64)
    for kind in range(kinds):
        spans[kind, 0], spans[kind, 1], spans[kind, 2] = _spanned_axes(first_axis, dim, kind)
    out = np.empty(nz * ny * nx * kinds, x.dtype)
    n = 0
    for z in range(nz):
        for y in range(ny):
            for i in range(nx):
                for kind in range(kinds):
                    sz, sy, sx = spans[kind, 0], spans[kind, 1], spans[kind, 2]
                    if z + sz >= nz or y + sy >= ny or i + sx >= nx:
                        continue
                    # the box from (z, y, i) spanning the flagged axes, written out: a call here
                    # made this ten times slower
                    value = min(x[z, y, i], x[z, y, i + sx])
                    if sy:
                        value = min(value, min(x[z, y + 1, i], x[z, y + 1, i + sx]))
                    if sz:
                        value = min(value, min(x[z + 1, y, i], x[z + 1, y, i + sx]))
                        if sy:
                            value = min(value, min(x[z + 1, y + 1, i], x[z + 1, y + 1, i + sx]))
                    out[n] = value
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
def ends_in_order(ends, order):
    """``ends[order]``, the two ends of each cell in sweep order. Gathered in one loop of
    independent reads, ahead of the union-find whose finds wait on them: a third faster than
    reading them inside it (measured on 256x256 maps)."""
    out = np.empty((order.size, 2), np.int32)
    for i in range(order.size):
        out[i, 0] = ends[order[i], 0]
        out[i, 1] = ends[order[i], 1]
    return out


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
    ends = ends_in_order(edge_ends, order)
    for i in range(order.size):
        if components == 1:  # the rest of the edges merge nothing
            break
        ru, rv = _find(parent, ends[i, 0]), _find(parent, ends[i, 1])
        if ru == rv:
            continue
        e = order[i]
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
def _merge_eldest(eldest, eldest_value, a, b, elder):
    """Of the eldest vertices of the roots ``a`` and ``b`` (values alongside, so that the four
    reads do not wait on each other), the younger; the elder becomes ``elder``'s."""
    u, v, value_u, value_v = eldest[a], eldest[b], eldest_value[a], eldest_value[b]
    if value_u < value_v or (value_u == value_v and u > v):
        eldest[elder], eldest_value[elder] = v, value_v
        return u
    eldest[elder], eldest_value[elder] = u, value_u
    return v


@njit(cache=True, nogil=True)
def image_deaths_dim0(vertex_c, edge_c, edge_ends, order_c, vertex_p, vertex_g):
    """Where the image bars of ``P`` and of ``G`` die with the bars of ``C`` in dimension 0: for
    each positive-length bar of ``C``, the vertices where they were born, and ``C``'s merging
    edges (as :func:`bars_dim0`). The bars of ``P`` and ``G`` born there are matched (see
    :func:`matched_bars`).

    Union-finds of ``P`` and ``G`` that follow ``C``'s merges have ``C``'s components, so one
    union-find holds them, with each component's eldest vertex by ``P``'s and by ``G``'s values:
    the image bar that ``C``'s edge kills is born at the younger of the two merging ones.
    Returns ``(births by P, births by G, merged)``.
    """
    parent = np.arange(vertex_c.size, dtype=np.int32)
    eldest_p = np.arange(vertex_c.size, dtype=np.int32)
    eldest_g = np.arange(vertex_c.size, dtype=np.int32)
    eldest_p_value, eldest_g_value = vertex_p.copy(), vertex_g.copy()
    births_p = np.empty(vertex_c.size, np.int64)
    births_g = np.empty(vertex_c.size, np.int64)
    merged = np.zeros(order_c.size, np.bool_)
    n = 0
    components = vertex_c.size
    ends = ends_in_order(edge_ends, order_c)
    for i in range(order_c.size):
        if components == 1:
            break
        ru, rv = _find(parent, ends[i, 0]), _find(parent, ends[i, 1])
        if ru == rv:
            continue
        e = order_c[i]
        components -= 1
        merged[e] = True
        young = _younger(vertex_c, ru, rv)
        elder = rv if young == ru else ru
        parent[young] = elder
        young_p = _merge_eldest(eldest_p, eldest_p_value, ru, rv, elder)
        young_g = _merge_eldest(eldest_g, eldest_g_value, ru, rv, elder)
        if vertex_c[young] != edge_c[e]:
            births_p[n], births_g[n] = young_p, young_g
            n += 1
    return births_p[:n], births_g[:n], merged


def matched_bars(of_p: np.ndarray, of_g: np.ndarray) -> np.ndarray:
    """Pairs ``(bar of P, bar of G)`` matched through the bars of ``C``: ``of_p[i]``, ``of_g[i]`` the
    bars of ``P`` and ``G`` whose image bars meet ``C``'s ``i``-th bar (``-1``: none)."""
    both = (of_p >= 0) & (of_g >= 0)
    return np.stack([of_p[both], of_g[both]], 1).astype(np.int64)


@njit(cache=True, nogil=True)
def bars_top(top_values, facet_values, top_c, facet_ends, order):
    """Positive-length bars of the top dimension, and where they land in ``C``.

    The facets in ``order`` (the image's own) are read backwards: union-find of the top cells and
    the outside, the outside eldest; ``C``'s union-find following each merge has the same
    components, so each component also holds its eldest top cell by ``C``'s values ``top_c``.
    Returns ``(births, deaths, bar_of_c, created)``: facet positions, top ids, for each root of
    ``C`` the bar whose death merged into it (``-1``: none), and the mask of the facets that merge
    (they create a top-dimensional class: in the middle dimension their boundaries reduce to zero,
    its clearing).
    """
    outside = top_values.size
    parent = np.arange(outside + 1, dtype=np.int32)
    eldest_c = np.arange(outside + 1, dtype=np.int32)
    bar_of_c = np.full(outside + 1, -1, np.int64)
    created = np.zeros(order.size, np.bool_)
    births = np.empty(outside, np.int64)
    deaths = np.empty(outside, np.int64)
    n = 0
    components = outside + 1
    ends = ends_in_order(facet_ends, order)
    for i in range(order.size - 1, -1, -1):
        if components == 1:  # all top cells joined the outside
            break
        a, b = ends[i, 0], ends[i, 1]
        ra, rb = _find(parent, a), _find(parent, b)
        if ra == rb:
            continue
        f = order[i]
        components -= 1
        young = _younger_dual(top_values, ra, rb, outside)
        elder = rb if young == ra else ra
        parent[young] = elder
        created[f] = True
        young_c = _younger_dual(top_c, eldest_c[ra], eldest_c[rb], outside)
        eldest_c[elder] = eldest_c[rb] if young_c == eldest_c[ra] else eldest_c[ra]
        if facet_values[f] != top_values[young]:
            births[n], deaths[n] = f, young
            bar_of_c[young_c] = n
            n += 1
    return births[:n], deaths[:n], bar_of_c, created


@njit(cache=True, nogil=True)
def deaths_top(top_c, facet_c, facet_ends, order_c):
    """The positive-length bars of ``C`` in the top dimension, by the top cell (the root of ``C``'s
    union-find) that dies, and ``C``'s creating facets (as :func:`bars_top`). The bars of ``P``
    and ``G`` that :func:`bars_top` lands at that root are matched (see :func:`matched_bars`)."""
    outside = top_c.size
    parent = np.arange(outside + 1, dtype=np.int32)
    deaths = np.empty(outside, np.int64)
    created = np.zeros(order_c.size, np.bool_)
    n = 0
    components = outside + 1
    ends = ends_in_order(facet_ends, order_c)
    for i in range(order_c.size - 1, -1, -1):
        if components == 1:
            break
        ra, rb = _find(parent, ends[i, 0]), _find(parent, ends[i, 1])
        if ra == rb:
            continue
        f = order_c[i]
        components -= 1
        young = _younger_dual(top_c, ra, rb, outside)
        parent[young] = rb if young == ra else ra
        created[f] = True
        if facet_c[f] != top_c[young]:
            deaths[n] = young
            n += 1
    return deaths[:n], created


# --- dimension 1 of a volume: column reduction --------------------------------------------------
# A matrix of at most ``width`` (four) entries per column, given by the cells' incidences: cell
# ``c`` is column ``column_rank[c]``, its rows are ``rank`` of its neighbours (``neighbours[c]``,
# ``-1``: none), both reversed (``len(rank) - 1 - rank``) with ``flip``; the row of a neighbour ``s`` is
# also held by the columns of the cells ``transposed[s]``. ``cleared`` cells have empty columns,
# and ``never_pivot`` cells no row: a row that is no column's final pivot is never a column's pivot
# on the way either (the column would stop there and own it), so dropping it changes no pair and
# shortens every column that holds it (the other half of the clearing: homology's zero columns are
# cohomology's free rows).
# Nearly all pairs are apparent (found from one column and its pivot's row); only the others go
# through a column reduction, in column order. Both write the table ``owners``, one entry per row
# *cell*: the cell whose column has that row as pivot (``-1``: none), or ``-2 - j`` for the ``j``-th
# stored (reduced) column. A column that stays as it is is read back from ``neighbours`` when it
# is added: a quarter of the table that would hold its rows, which every apparent pair writes and
# a volume's five reductions fill and fault in (measured on a 64x128x128 volume: 4-6 % of the
# whole matching). Indexed by cell, the apparent pairs' writes land next to the column being read
# (the pivot is one of its neighbours) instead of at a random rank: half of their cost. A reduction
# holds each row as one integer of its row and its cell (:func:`_entry`), so that a pivot's cell is
# never looked up by its row: that look-up lands anywhere in the table of cells by rank.


@njit(cache=True, nogil=True)
def _position(cell, rank, flip):
    """The row (``rank``: the rows') or column of a cell."""
    return rank.size - 1 - rank[cell] if flip else rank[cell]


@njit(cache=True, nogil=True)
def _cell_bits(n_cells):
    """Bits that hold a cell id below ``n_cells``."""
    bits = 1
    while (1 << bits) < n_cells:
        bits += 1
    return bits


@njit(cache=True, nogil=True)
def _entry(cell, rank, flip, bits):
    """A row as a heap entry: the latest row smallest, its cell in the low ``bits``."""
    return np.int64(rank.size - 1 - _position(cell, rank, flip)) << bits | cell


@njit(cache=True, nogil=True)
def apparent_pairs(column_rank, neighbours, transposed, rank, flip, cleared, never_pivot, owners):
    """The apparent pairs of the columns.

    A column whose pivot (largest row) is held by no earlier column is never added to: it stays as
    it is and owns that row. Returns the other non-empty columns, ``(cells, row cells)``, in column
    order, the pivot's cell last (``-1`` where fewer rows): the reduction reads them there, not
    scattered over the cells' tables. The four rows of a column are held in named variables, not
    a buffer: a third of this pass's time (measured on a 64x128x128 volume).
    """
    width = neighbours.shape[1]  # four: an edge of a volume has four squares, a square four edges
    unresolved_columns = np.empty(1024, np.int64)
    unresolved_cells = np.empty(1024, np.int64)
    unresolved_rows = np.full((1024, width), -1, np.int32)
    n = 0
    for c in range(column_rank.size):
        if cleared[c]:
            continue
        s0, s1, s2, s3 = neighbours[c, 0], neighbours[c, 1], neighbours[c, 2], neighbours[c, 3]
        # their rows, -1: none (no neighbour, or a dropped row); written out, as a call here made
        # the pass four times slower
        s0 = s0 if s0 >= 0 and not never_pivot[s0] else -1
        s1 = s1 if s1 >= 0 and not never_pivot[s1] else -1
        s2 = s2 if s2 >= 0 and not never_pivot[s2] else -1
        s3 = s3 if s3 >= 0 and not never_pivot[s3] else -1
        r0 = -1 if s0 < 0 else _position(s0, rank, flip)
        r1 = -1 if s1 < 0 else _position(s1, rank, flip)
        r2 = -1 if s2 < 0 else _position(s2, rank, flip)
        r3 = -1 if s3 < 0 else _position(s3, rank, flip)
        pivot, pivot_cell = r0, s0
        if r1 > pivot:
            pivot, pivot_cell = r1, s1
        if r2 > pivot:
            pivot, pivot_cell = r2, s2
        if r3 > pivot:
            pivot, pivot_cell = r3, s3
        if pivot < 0:
            continue
        k = _position(c, column_rank, flip)
        apparent = True
        for i in range(transposed.shape[1]):
            other = transposed[pivot_cell, i]
            if other >= 0 and not cleared[other] and _position(other, column_rank, flip) < k:
                apparent = False
        if apparent:
            owners[pivot_cell] = c
            continue
        # the other rows' cells, read by the reduction from here, not scattered over the tables
        if pivot_cell == s0:
            o0, o1, o2 = s1, s2, s3
        elif pivot_cell == s1:
            o0, o1, o2 = s0, s2, s3
        elif pivot_cell == s2:
            o0, o1, o2 = s0, s1, s3
        else:
            o0, o1, o2 = s0, s1, s2
        if n == unresolved_columns.size:
            unresolved_columns = grown(unresolved_columns, n + 1)
            unresolved_cells = grown(unresolved_cells, n + 1)
            more = np.full((unresolved_columns.size, width), -1, np.int32)
            more[:n] = unresolved_rows
            unresolved_rows = more
        unresolved_columns[n] = k
        unresolved_cells[n] = c
        unresolved_rows[n, 0], unresolved_rows[n, 1], unresolved_rows[n, 2], unresolved_rows[n, 3] = o0, o1, o2, pivot_cell
        n += 1
    # In column order: the radix sort of their negatives, exact as float32 below 2 ** 24 columns
    # (numba's argsort, a quicksort, took a third of this pass on the 378 k such columns of a
    # 64x128x128 mask's rows).
    negatives = -unresolved_columns[:n]
    if column_rank.size < 1 << 24:
        in_order = descending_order(negatives.astype(np.float32), np.zeros(0, np.int64))
    else:
        in_order = descending_order(negatives.astype(np.float64), np.zeros(0, np.int64))
    return unresolved_cells[in_order], unresolved_rows[in_order]


@njit(cache=True, nogil=True)
def reduce_unresolved(unresolved_cells, unresolved, neighbours, rank, flip, never_pivot, owners):
    """Column reduction of the columns that :func:`apparent_pairs` left (of ``unresolved_cells``,
    row cells ``unresolved``), in column order.

    A column is reduced by adding the column that owns its pivot: one kept as it is (its rows:
    its ``neighbours`` but the ``never_pivot`` ones) or a reduced one, stored pivot first in one
    pool. The column being reduced is a heap of :func:`_entry` whose equal entries cancel when
    they reach the top: an addition costs the added column's length, not the reduced column's,
    which grows to hundreds of rows on a plateau while the added ones hold a few (measured on a
    64x128x128 noisy prediction against its mask). Completes ``owners``; returns the cell of each
    stored (reduced) column.
    """
    width = unresolved.shape[1]
    bits = _cell_bits(rank.size)
    cell_of = (1 << bits) - 1
    start = np.zeros(1024, np.int64)
    pool = np.empty(4096, np.int64)
    n_stored = 0
    heap = np.empty(64, np.int64)
    stored_cells = np.empty(1024, np.int64)
    for u in range(unresolved_cells.size):
        pivot_cell = unresolved[u, width - 1]
        if owners[pivot_cell] == -1:  # its pivot is free: it stays as it is (most columns of a mask's rows)
            owners[pivot_cell] = unresolved_cells[u]
            continue
        size = 0  # otherwise it is reduced (its pivot is owned): into the heap
        for i in range(width):
            if unresolved[u, i] >= 0:
                heap_push(heap, size, _entry(unresolved[u, i], rank, flip, bits))
                size += 1
        while True:
            entry, size = pop_pivot(heap, size)
            if entry < 0:
                break
            pivot_cell = entry & cell_of
            j = owners[pivot_cell]
            if j == -1:
                break
            if j >= 0:  # kept as it is: its rows but the pivot, just popped
                if size + width > heap.size:
                    heap = grown(heap, size + width)
                for i in range(width):
                    s = neighbours[j, i]
                    if s >= 0 and s != pivot_cell and not never_pivot[s]:
                        heap_push(heap, size, _entry(s, rank, flip, bits))
                        size += 1
            else:
                first, stop = start[-2 - j] + 1, start[-1 - j]
                if size + stop - first > heap.size:
                    heap = grown(heap, size + stop - first)
                for i in range(first, stop):
                    heap_push(heap, size, pool[i])
                    size += 1
        if entry < 0:  # reduced to zero
            continue
        owners[pivot_cell] = -2 - n_stored
        if n_stored == stored_cells.size:
            stored_cells = grown(stored_cells, n_stored + 1)
        stored_cells[n_stored] = unresolved_cells[u]
        pool, used = store_reduced_column(pool, start[n_stored], entry, heap, size)
        n_stored += 1
        if n_stored + 1 > start.size:
            start = grown(start, n_stored + 1)
        start[n_stored] = used
    return stored_cells[:n_stored]


@njit(cache=True, nogil=True)
def _owner(owners, stored_cells, s):
    """The cell whose column has row cell ``s`` as pivot, ``-1``: none."""
    column = owners[s]
    return stored_cells[-2 - column] if column < -1 else column


@njit(cache=True, nogil=True)
def owned_pairs(owners, stored_cells, column_values, row_values):
    """The pairs that ``owners`` records, as ``(column cells, row cells)``, by row cell. Where
    ``column_values`` is not empty, only the pairs whose two cells' values differ (positive
    length). Counted first and written at their size: the pairs of a large volume fill hundreds of
    megabytes, and fresh memory costs more to fault in than to fill.
    """
    positive_only = column_values.size > 0
    out_columns = out_rows = np.empty(0, np.int64)
    for writing in (False, True):
        n = 0
        for s in range(owners.shape[0]):
            column = _owner(owners, stored_cells, s)
            if column == -1 or (positive_only and column_values[column] == row_values[s]):
                continue
            if writing:
                out_columns[n], out_rows[n] = column, s
            n += 1
        if not writing:
            out_columns, out_rows = np.empty(n, np.int64), np.empty(n, np.int64)
    return out_columns, out_rows


@njit(cache=True, nogil=True)
def edges_killed_at(owners, stored_cells, squares, by_square, n_squares):
    """For each of ``squares``, the edge paired with it in the reduction that left ``owners``
    (``-1``: none): looked up where the rows are the squares (``by_square``, cohomology), found in
    one pass over the edges' rows otherwise. What an image's reduction is read for: all its pairs
    would be most of the cells."""
    out = np.full(squares.size, -1, np.int64)
    if by_square:
        for i in range(squares.size):
            out[i] = _owner(owners, stored_cells, squares[i])
        return out
    index = np.full(n_squares, -1, np.int32)
    for i in range(squares.size):
        index[squares[i]] = i
    for e in range(owners.shape[0]):
        square = _owner(owners, stored_cells, e)
        if square >= 0 and index[square] >= 0:
            out[index[square]] = e
    return out


def reduce_incidences(column_rank, neighbours, transposed, rank, flip, cleared, never_pivot):
    """Reduce the matrix described above: ``(owners, stored cells)`` (see :func:`reduce_unresolved`)."""
    owners = np.full(rank.size, -1, np.int32)
    unresolved = apparent_pairs(column_rank, neighbours, transposed, rank, flip, cleared, never_pivot, owners)
    return owners, reduce_unresolved(*unresolved, neighbours, rank, flip, never_pivot, owners)


@dataclass(frozen=True)
class Reduction:
    """The reduced boundary matrix of a volume's squares (:func:`reduce_by_cohomology`,
    :func:`reduce_by_homology`), read for its pairs or for the edges that the squares kill."""

    owners: np.ndarray
    stored_cells: np.ndarray
    by_square: bool  # the table's rows are the squares (cohomology) or the edges (homology)
    n_squares: int

    def pairs(self, values=None) -> tuple[np.ndarray, np.ndarray]:
        """Pairs ``(edge positions, square positions)``; with ``values`` (of the edges, of the
        squares), only those of positive length."""
        edge_values, square_values = (np.zeros(0, np.float32),) * 2 if values is None else values
        column_values, row_values = (edge_values, square_values) if self.by_square else (square_values, edge_values)
        columns, rows = owned_pairs(self.owners, self.stored_cells, column_values, row_values)
        return (columns, rows) if self.by_square else (rows, columns)

    def edges_killed_at(self, squares: np.ndarray) -> np.ndarray:
        """The edge paired with each of ``squares`` (positions), ``-1``: none."""
        return edges_killed_at(self.owners, self.stored_cells, squares, self.by_square, self.n_squares)


def reduce_by_cohomology(cells, row_rank, column_rank, merged, created) -> Reduction:
    """The reduced boundary matrix of a volume's squares (``cells``: their :class:`Layout`), edge
    ``e`` its row ``row_rank[e]`` and square ``f`` its column ``column_rank[f]``.

    Reduced as its anti-transpose, whose lower-left ranks are the same (de Silva, Morozov &
    Vejdemo-Johansson, 2011): the coboundaries of the edges from the latest, with the squares
    from the latest (row ``0``). ``merged`` edges, those that merge components in the rows'
    order, are never pivot rows (which rows are does not depend on the columns' order): their
    coboundaries are cleared; ``created`` squares, those that create a cavity in the columns'
    order, reduce to zero: they are no pivot, their rows are dropped.
    """
    owners, stored = reduce_incidences(row_rank, cells.edge_squares, cells.square_edges, column_rank, True, merged,
                                       created)
    return Reduction(owners, stored, True, cells.facets.size)


def reduce_by_homology(cells, row_rank, column_rank, merged, created) -> Reduction:
    """:func:`reduce_by_cohomology` by reducing the boundaries of the squares: ``created`` squares
    are cleared, ``merged`` edges' rows dropped."""
    owners, stored = reduce_incidences(column_rank, cells.square_edges, cells.edge_squares, row_rank, False, created,
                                       merged)
    return Reduction(owners, stored, False, cells.facets.size)


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
def cell_voxels(cells, values, kshape, shape, x, full):
    """The voxel that carries each cell's value: the first, in C order, of its voxels with that value.

    ``values`` are the cells' values; ``kshape`` and ``shape`` are 3-tuples (``(1, ...)`` for a 2D
    image); ``x`` is flat.
    """
    out = np.empty(cells.size, np.int64)
    for i in range(cells.size):
        c = cells[i]
        cz, rest = divmod(c, kshape[1] * kshape[2])
        cy, cx = divmod(rest, kshape[2])
        target = values[i]
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


def _is_mask(x: np.ndarray) -> bool:
    """Whether a map holds at most two values (a ground-truth mask)."""
    lowest, highest = x.min(), x.max()
    return bool(((x == lowest) | (x == highest)).all())


def _side_values(cells: Layout, x: np.ndarray, full: bool) -> dict:
    """Values of one map's cells, by kind, in the Layout's order."""
    if not full:  # straight from the voxels: a third of the time of the grid and its gathers
        x3 = x.reshape((1,) * (3 - x.ndim) + x.shape)
        first, ndim = 3 - x.ndim, x.ndim
        side = {"vertex": x.reshape(-1), "edge": _face_values(x3, first, 1), "top": _face_values(x3, first, ndim)}
        side["facet"] = side["edge"] if ndim == 2 else _face_values(x3, first, ndim - 1)
        return side
    grid = khalimsky_values(x, full).reshape(-1)  # the T-construction: its voxels are the top cells
    side = {kind: grid[cells.of(kind)] for kind in ("vertex", "edge")}
    side["top"] = x.reshape(-1)  # in memory order in the Layout's
    side["facet"] = side["edge"] if cells.facets is cells.edges else grid[cells.facets]  # an image's facets: its edges
    return side


@njit(cache=True, nogil=True)
def stable_partition(first):
    """Indices where ``first`` holds, then the others, each in index order."""
    order = np.empty(first.size, np.int32)
    at_first, at_second = 0, np.count_nonzero(first)
    for i in range(first.size):
        if first[i]:
            order[at_first] = i
            at_first += 1
        else:
            order[at_second] = i
            at_second += 1
    return order


@njit(cache=True, nogil=True)
def two_valued_order(values):
    """Indices of an array of at most two values by decreasing value, ties by index: a stable
    partition, one pass instead of a sort."""
    return stable_partition(values == values.max())


@njit(cache=True, nogil=True)
def order_above(values, lower, lower_order):
    """Indices of ``values`` by decreasing value, ties by index, given those of ``lower <= values``
    (elementwise) in ``lower_order``.

    The comparison image is its prediction raised where the target is higher: the cells it leaves
    as they were keep their order, those at the highest value (a mask's foreground) come first by
    index, and only the rest are sorted before a merge. Falls back to a sort where that rest is
    more than a quarter of the cells.
    """
    n = values.size
    high = values.max()
    kept = np.empty(n, np.bool_)
    at_high = np.empty(n, np.int64)  # the raised cells at ``high``, by index
    below_high = np.empty(n, np.int64)  # and the others
    n_high = n_below = 0
    for i in range(n):
        kept[i] = values[i] == lower[i]
        if kept[i]:
            continue
        if values[i] == high:
            at_high[n_high] = i
            n_high += 1
        else:
            below_high[n_below] = i
            n_below += 1
    if 4 * n_below > n:
        return descending_order(values, np.zeros(0, np.int64))
    below_high = below_high[:n_below]
    raised = np.concatenate((at_high[:n_high], below_high[descending_order(values[below_high], np.zeros(0, np.int64))]))
    raised_values = values[raised]
    order = np.empty(n, np.int32)
    j = 0  # next raised cell
    k = 0
    for i in range(lower_order.size):  # merge the kept cells, in ``lower_order``, with the raised ones
        a = lower_order[i]
        if not kept[a]:
            continue
        value = values[a]
        while j < raised.size and (raised_values[j] > value or (raised_values[j] == value and raised[j] < a)):
            order[k] = raised[j]
            j += 1
            k += 1
        order[k] = a
        k += 1
    order[k:] = raised[j:]
    return order


def _sort(side: dict, kind: str, with_rank: bool, lower: dict | None = None) -> None:
    """``side[kind + "_order"]``: the cells of one kind by decreasing value, ties in the Layout's
    order; and their inverse ``side[kind + "_rank"]`` where the reductions of a volume need it.
    A mask's cells are partitioned; those of a map above ``lower``'s (sorted) merged into its order."""
    if side["mask"]:
        order = two_valued_order(side[kind])
    elif lower is not None:
        order = order_above(side[kind], lower[kind], lower[kind + "_order"])
    else:
        order = descending_order(side[kind], np.zeros(0, np.int64))
    side[kind + "_order"] = order
    if with_rank:
        side[kind + "_rank"] = inverse_permutation(order)


def middle_reduction(cells: Layout, rows: dict, columns: dict) -> Reduction:
    """The boundary matrix of the squares reduced, rows in the order of one map and columns in
    that of another (an image) or the same (its bars). By cohomology, or by homology where the
    rows' map is a mask (two values), whose long plateaus make cohomology need about thirteen
    times more column additions (measured on a 64x128x128 noisy prediction against its mask)."""
    reduce = reduce_by_homology if rows["mask"] else reduce_by_cohomology
    return reduce(cells, rows["edge_rank"], columns["facet_rank"], rows["merged"], columns["created"])


@njit(cache=True, nogil=True)
def bars_at_births(births, bar_births, n_edges):
    """For each edge of ``births`` (``-1``: none), the bar born there (of those born at
    ``bar_births``), ``-1``: none."""
    bar_of_birth = np.full(n_edges, -1, np.int32)
    for i in range(bar_births.size):
        bar_of_birth[bar_births[i]] = i
    out = np.full(births.size, -1, np.int64)
    for i in range(births.size):
        if births[i] >= 0:
            out[i] = bar_of_birth[births[i]]
    return out


def run_tasks(tasks: dict, pool: Executor | None) -> None:
    """Run ``tasks`` (``{name: (function of no arguments, names it waits for)}``), each once the
    tasks it waits for are done, those first in the dict's order first: on ``pool``'s threads, no
    more at a time than it has (a task queued behind others could not overtake them when it
    becomes the most urgent), or here in that order where ``pool`` is None."""
    slots = getattr(pool, "_max_workers", 1)  # ThreadPoolExecutor's size; one at a time otherwise
    done, running, waiting = set(), {}, dict(tasks)
    while waiting or running:
        ready = [name for name, (_, after) in waiting.items() if done.issuperset(after)]
        if not ready and not running:
            raise ValueError(f"tasks {sorted(waiting)} wait for tasks that are not given.")
        for name in ready[:max(0, slots - len(running)) if pool is not None else 1]:
            function = waiting.pop(name)[0]
            if pool is None:
                function()
                done.add(name)
            else:
                running[pool.submit(function)] = name
        if running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()  # raises a task's error here
                done.add(running.pop(future))


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
        Threads for the independent stages (each map's values, sorts and bars, the matchings, the
        reductions of a volume), each started once what it needs is done; default sequential.
        Worth it for one large image; a batch is better split by item.

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
    volume = ndim == 3
    maxdim = ndim - 1 if maxdim is None else maxdim
    middle = volume and maxdim >= 1
    dtype = np.result_type(prediction.dtype, target.dtype, np.float32)
    p_map, g_map = (np.ascontiguousarray(a, dtype) for a in (prediction, target))
    maps = {"C": np.maximum(p_map, g_map), "P": p_map, "G": g_map}  # C: the comparison image
    kshape = tuple(2 * n + 1 if full else 2 * n - 1 for n in prediction.shape)
    cells = layout(kshape, full)
    sides = {name: {} for name in maps}
    p, g, c = sides["P"], sides["G"], sides["C"]
    results = {}

    # Each task names the tasks whose results it reads.
    def facets(name):
        return f"facets {name}" if volume else f"edges {name}"

    tasks = {}
    for name, side in sides.items():
        lower = p if name == "C" else None  # C's order is P's, raised where G is higher

        def values(side=side, x=maps[name], lower=lower):
            side.update(_side_values(cells, x, full), mask=_is_mask(x))
            _sort(side, "edge", volume, lower)
            if not volume:
                side["facet_order"] = side["edge_order"]

        after = ("edges P",) if lower is not None else ()
        tasks[f"edges {name}"] = values, after
        if volume:
            tasks[f"facets {name}"] = ((lambda side=side, lower=lower: _sort(side, "facet", True, lower)),
                                       (f"edges {name}", *(("facets P",) if lower is not None else ())))
    for name, side in (("P", p), ("G", g)):
        def dim0(side=side):
            side["dim0"] = bars_dim0(side["vertex"], side["edge"], cells.edge_ends, side["edge_order"])
            side["merged"] = side["dim0"][3]

        tasks[f"dim0 {name}"] = dim0, (f"edges {name}",)
    for name, side in (("P", p), ("G", g)):
        def top(side=side):
            side["top_bars"] = bars_top(side["top"], side["facet"], c["top"], cells.facet_ends, side["facet_order"])
            side["created"] = side["top_bars"][3]

        tasks[f"top {name}"] = top, (facets(name), "edges C")

    def dim0_c():
        c["dim0"] = image_deaths_dim0(c["vertex"], c["edge"], cells.edge_ends, c["edge_order"], p["vertex"], g["vertex"])
        c["merged"] = c["dim0"][2]

    def top_c():
        c["top_bars"] = deaths_top(c["top"], c["facet"], cells.facet_ends, c["facet_order"])
        c["created"] = c["top_bars"][1]

    # C's union-finds wait only for C: what they need of P and G is read afterwards.
    tasks["dim0 C"] = dim0_c, ("edges C",)
    tasks["top C"] = top_c, (facets("C"),)
    if middle:
        for rows, columns in (("C", "C"), ("G", "C"), ("P", "C"), ("P", "P"), ("G", "G")):
            def reduce(rows=rows, columns=columns):
                reduction = middle_reduction(cells, sides[rows], sides[columns])
                if rows == columns:  # a map's bars: its positive-length pairs
                    side = sides[rows]
                    results[rows, columns] = reduction.pairs((side["edge"], side["facet"]))
                else:  # an image, read at the deaths of C's bars
                    results[rows, columns] = reduction

            tasks[f"middle {rows} {columns}"] = reduce, (f"edges {rows}", facets(columns), f"dim0 {rows}",
                                                         f"top {columns}")
        for name in ("P", "G"):
            def image(name=name):
                births = results[name, "C"].edges_killed_at(results["C", "C"][1])
                results[name, "C"] = None  # its table: tens of megabytes
                results["image", name] = bars_at_births(births, results[name, name][0], cells.edges.size)

            tasks[f"match1 {name}"] = image, (f"middle {name} C", "middle C C", f"middle {name} {name}")
    # By stage (a stable sort: C first within one), so that dimension 0, whose union-find for C
    # the longest chain waits for, comes before the facets' sorts.
    stages = ("edges", "dim0", "facets", "top", "middle", "match1")
    run_tasks(dict(sorted(tasks.items(), key=lambda task: stages.index(task[0].split()[0]))), pool)

    (bp, dp, _, _), (bg, dg, _, _) = p["dim0"], g["dim0"]
    at_p, at_g, _ = c["dim0"]
    per_dim = [("vertex", "edge", bp, dp, bg, dg, matched_bars(p["dim0"][2][at_p], g["dim0"][2][at_g]))]
    if middle:
        (bp1, dp1), (bg1, dg1) = results["P", "P"], results["G", "G"]
        matches = matched_bars(results["image", "P"], results["image", "G"])
        per_dim.append(("edge", "facet", bp1, dp1, bg1, dg1, matches))
    if maxdim >= ndim - 1:
        (bp, dp, _, _), (bg, dg, _, _) = p["top_bars"], g["top_bars"]
        dies = c["top_bars"][0]
        per_dim.append(("facet", "top", bp, dp, bg, dg, matched_bars(p["top_bars"][2][dies], g["top_bars"][2][dies])))
    per_dim = per_dim[:maxdim + 1]

    k3 = (1,) * (3 - ndim) + kshape
    shape = (1,) * (3 - ndim) + prediction.shape
    matched, lonely_p, lonely_g = [], [], []
    for birth_kind, death_kind, bp, dp, bg, dg, matches in per_dim:
        vp, vg = ([cell_voxels(cells.of(kind)[ends], side[kind][ends], k3, shape, x.reshape(-1), full)
                   for kind, ends in ((birth_kind, b), (death_kind, d))]
                  for side, x, b, d in ((p, p_map, bp, dp), (g, g_map, bg, dg)))
        mp, mg = matches[:, 0], matches[:, 1]
        matched.append(np.stack([vp[0][mp], vp[1][mp], vg[0][mg], vg[1][mg]], 1).reshape(-1, 4))
        free_p = np.ones(bp.size, bool)
        free_p[mp] = False
        free_g = np.ones(bg.size, bool)
        free_g[mg] = False
        lonely_p.append(np.stack([vp[0][free_p], vp[1][free_p]], 1).reshape(-1, 2))
        lonely_g.append(np.stack([vg[0][free_g], vg[1][free_g]], 1).reshape(-1, 2))
    return BettiMatching(matched, lonely_p, lonely_g)
