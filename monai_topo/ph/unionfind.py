"""Cubical persistence by union-find, Alexander duality and an apparent-pair reduction (numba).

The whole diagram comes from one sort of the voxels:

- dimension 0: union-find over the voxels in filtration order (8/26-connected for ``"full"``,
  4/6 for ``"face"``), elder rule;
- the top dimension (holes in 2D, cavities in 3D): by Alexander duality, the dimension-0 bars of
  the complement swept in reverse order with the dual connectivity, the outside of the image being
  one component that exists from the start;
- dimension 1 of a 3D volume: persistent cohomology of the V-construction (``"face"``), or of the
  V-construction of the padded complement (``"full"``, again by duality), cleared by the
  union-find of the same sweep. Nearly all pairs are *apparent* (decided by looking at one edge
  and its four cofaces), so only the few remaining columns are reduced.

Every cell gets the key ``(rank of its latest voxel, dimension, local code)``: a total order that
refines the values and lists faces before cofaces, so the positive-length bars equal gudhi's and
CubicalRipser's. Zero-length pairs are never emitted.

Positions: a voxel's ``rank`` is its place in the order of decreasing ``x`` (ties by flat index).
The kernels work on a copy of the rank array padded by one voxel on every spatial side (3D) or
around the plane (2D), so neighbours never need bounds checks; a padded cell holds ``NEVER`` in the
forward sweep (never present) and a negative number in the reverse sweep (present from the start).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit, types
from numba.extending import overload
from numba.typed import Dict

NEVER = np.int32(np.iinfo(np.int32).max)
MAX_VOXELS = int(np.iinfo(np.int32).max) - 1  # ranks and padded indices are int32
_RADIX_BITS = 11
# Below this many voxels an image is not worth splitting over threads.
_PARALLEL_IMAGE_SIZE = 1 << 18


def _descending_keys(values):
    """Unsigned keys whose ascending order is the descending order of ``values`` (numba only)."""
    raise NotImplementedError


def _descending_keys_impl(uint, sign_bit):
    def impl(values):
        bits = values.view(uint)
        keys = np.empty(bits.size, uint)
        for i in range(bits.size):
            b = bits[i]
            # Map floats to unsigned integers in value order (negatives flipped), then reverse.
            ascending = ~b if b & sign_bit else b | sign_bit
            keys[i] = ~ascending
        return keys

    return impl


@overload(_descending_keys)
def _descending_keys_overload(values):
    if values.dtype == types.float32:
        return _descending_keys_impl(np.uint32, np.uint32(1 << 31))
    if values.dtype == types.float64:
        return _descending_keys_impl(np.uint64, np.uint64(1 << 63))
    return None


@njit(cache=True, nogil=True)
def descending_order(values):
    """Flat indices of ``values`` (float32/float64, 1D) by decreasing value, ties by index.

    A stable least-significant-digit radix sort on the float bits; digits on which all keys
    agree (the exponent of probabilities, the padding of float32) are skipped.
    """
    keys = _descending_keys(values)
    n = keys.size
    n_bits = keys.itemsize * 8
    n_digits = (n_bits + _RADIX_BITS - 1) // _RADIX_BITS
    n_buckets = 1 << _RADIX_BITS
    mask = n_buckets - 1
    counts = np.zeros((n_digits, n_buckets), np.int64)
    for i in range(n):
        k = keys[i]
        for digit in range(n_digits):
            counts[digit, (k >> (digit * _RADIX_BITS)) & mask] += 1
    order = np.arange(n).astype(np.int32)
    spare_order = np.empty(n, np.int32)
    spare_keys = np.empty_like(keys)
    for digit in range(n_digits):
        shift = digit * _RADIX_BITS
        if counts[digit].max() == n:
            continue
        start = np.empty(n_buckets, np.int64)
        total = 0
        for b in range(n_buckets):
            start[b] = total
            total += counts[digit, b]
        for i in range(n):
            k = keys[i]
            b = (k >> shift) & mask
            j = start[b]
            start[b] = j + 1
            spare_keys[j] = k
            spare_order[j] = order[i]
        keys, spare_keys = spare_keys, keys
        order, spare_order = spare_order, order
    return order


@njit(cache=True, nogil=True)
def padded_positions(order, shape):
    """Padded index of each rank and the forward / reverse position arrays on the padded grid.

    ``shape`` is ``(D, H, W)`` (``D == 1`` and no padding along it for a 2D image).
    Forward position: the rank, ``NEVER`` on the padding. Reverse position: ``n - 1 - rank``,
    and ``index - size`` (negative, distinct, ordered) on the padding.
    """
    d, h, w = shape
    pad_z = 1 if d > 1 else 0
    pd, ph, pw = d + 2 * pad_z, h + 2, w + 2
    size = pd * ph * pw
    n = order.size
    forward = np.full(size, NEVER, np.int32)
    reverse = np.arange(size).astype(np.int32) - np.int32(size)
    padded_index = np.empty(n, np.int32)
    for rank in range(n):
        v = order[rank]
        z, rest = divmod(v, h * w)
        y, x = divmod(rest, w)
        p = ((z + pad_z) * ph + y + 1) * pw + x + 1
        padded_index[rank] = p
        forward[p] = rank
        reverse[p] = n - 1 - rank
    return padded_index, forward, reverse


# Corner neighbours in a chain where consecutive voxels touch each other: two present voxels next
# in the chain are already in one component, so union-find looks up only the first of each run.
_PLANE_CHAIN = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
_VOLUME_CHAIN = (
    (-1, -1, -1), (-1, -1, 0), (-1, -1, 1), (-1, 0, 1), (-1, 0, 0), (-1, 0, -1), (-1, 1, -1), (-1, 1, 0),
    (-1, 1, 1), (0, 1, 1), (0, 1, 0), (0, 1, -1), (0, 0, -1), (0, -1, -1), (0, -1, 0), (0, -1, 1),
    (0, 0, 1), (1, 0, 1), (1, 1, 1), (1, 1, 0), (1, 1, -1), (1, 0, -1), (1, 0, 0), (1, -1, -1),
    (1, -1, 0), (1, -1, 1),
)


@njit(cache=True, nogil=True)
def neighbour_offsets(shape, full):
    """Flat offsets of the neighbours of a voxel on the padded grid.

    Face neighbours (``full=False``) come in the order -z, +z, -y, +y, -x, +x, the direction
    codes of the dimension-1 edge keys; all neighbours (``full=True``) in a chain of touching
    voxels. An image with ``D == 1`` (2D) has no z neighbours.
    """
    d, h, w = shape
    strides = ((h + 2) * (w + 2), w + 2, 1)
    offsets = np.empty(26, np.int64)
    n = 0
    if full and d == 1:
        for dy, dx in _PLANE_CHAIN:
            offsets[n] = dy * strides[1] + dx
            n += 1
    elif full:
        for dz, dy, dx in _VOLUME_CHAIN:
            offsets[n] = dz * strides[0] + dy * strides[1] + dx
            n += 1
    else:
        for axis in range(3):
            if axis == 0 and d == 1:
                continue
            for sign in (-1, 1):
                offsets[n] = sign * strides[axis]
                n += 1
    return offsets[:n]


@njit(cache=True, nogil=True)
def _voxel(order, position, reverse):
    """Flat index in the image of the voxel at a sweep position."""
    return order[order.size - 1 - position] if reverse else order[position]


@njit(cache=True, nogil=True)
def _append(buffer, count, value):
    """Write ``value`` at ``count``, doubling ``buffer`` when full; returns the buffer."""
    if count == buffer.size:
        grown = np.empty(max(16, 2 * buffer.size), buffer.dtype)
        grown[:count] = buffer
        buffer = grown
    buffer[count] = value
    return buffer


@njit(cache=True, nogil=True)
def merge_components(x, order, padded_index, position, offsets, reverse, edge_marks):
    """Dimension-0 pairs of one sweep by union-find with the elder rule.

    ``reverse`` sweeps the complement (positions from :func:`padded_positions`), where the padding
    forms the outside component. When ``edge_marks`` is non-empty, bit ``k`` of
    ``edge_marks[p]`` records that the edge from ``p`` to ``p + offsets[k]`` merged two components
    (the clearing set of the dimension-1 reduction); the edges of a voxel are then taken in the
    order of the edge keys, by position of their other end. With all 8/26 neighbours, a present
    neighbour that follows a present one in the chain is skipped: it is in the same component.

    Each voxel stores the label of the component it joined; the union-find runs on the labels,
    which are numbered by birth (so the elder is the smaller label) and few enough to stay in
    cache, whereas the voxels are visited in value order, all over the volume.

    Returns flat indices ``(births, deaths)`` of the positive-length bars in super-level terms
    (``x[births] > x[deaths]``): for the reverse sweep these are the top-dimensional bars.
    """
    n = order.size
    label = np.zeros(position.size, np.int32)  # label 0: the outside, where the padding is present
    parent = np.empty(n + 1, np.int32)
    born = np.empty(n + 1, np.int64)
    parent[0] = 0
    n_labels = 1
    births = np.empty(64, np.int64)
    deaths = np.empty(64, np.int64)
    count = 0
    mark = edge_marks.size > 0
    chained = offsets.size >= 8  # all neighbours, in the chain order of neighbour_offsets
    earlier = np.empty(offsets.size, np.int64)
    earlier_position = np.empty(offsets.size, np.int64)
    for i in range(n):
        p = padded_index[n - 1 - i] if reverse else padded_index[i]
        n_earlier = 0
        previous_present = False
        for k in range(offsets.size):
            q_position = position[p + offsets[k]]
            present = q_position < i
            skip = not present or (chained and previous_present)
            previous_present = present
            if skip:
                continue
            j = n_earlier
            while mark and j > 0 and earlier_position[j - 1] > q_position:
                earlier[j] = earlier[j - 1]
                earlier_position[j] = earlier_position[j - 1]
                j -= 1
            earlier[j] = k
            earlier_position[j] = q_position
            n_earlier += 1
        root = -1
        for j in range(n_earlier):
            k = earlier[j]
            r = label[p + offsets[k]]
            while parent[r] != r:
                parent[r] = parent[parent[r]]
                r = parent[r]
            if r == root:
                continue
            if mark:
                edge_marks[p] |= 1 << k
            if root < 0:  # the voxel joins its first neighbour's component
                root = r
                continue
            elder, younger = min(r, root), max(r, root)
            parent[younger] = elder
            root = elder
            younger_birth = _voxel(order, born[younger], reverse)
            current = _voxel(order, i, reverse)
            if x[younger_birth] == x[current]:
                continue
            # Forward: the component born at ``younger_birth`` dies at ``current``. Reverse: a
            # complement component, i.e. a hole born at ``current`` and filled at ``younger_birth``.
            birth, death = (current, younger_birth) if reverse else (younger_birth, current)
            births = _append(births, count, birth)
            deaths = _append(deaths, count, death)
            count += 1
        if root < 0:
            root = n_labels
            parent[root] = root
            born[root] = i
            n_labels += 1
        label[p] = root
    return births[:count], deaths[:count]


# --- dimension 1 of a 3D volume ---------------------------------------------------------------
# Cells are ordered by the positions of their vertices, latest first: an edge by (latest, other),
# a square by (latest, second latest, local code). Within a voxel's lower star this makes the
# edge towards the latest earlier neighbour and its squares come first, which pairs almost every
# edge with a square at sight (apparent pairs). Keys are int64:
#   edge   = latest * span + (other + size)
#   square = (latest * span + (second + size)) * 12 + normal axis * 4 + corner
# with ``size`` the padded grid size (positions on the padding are >= -size) and
# ``span = size + n``; the corner bits say on which side of the square's lower (bit 1) and
# higher (bit 0) axis the latest vertex lies.


@njit(cache=True, nogil=True)
def _strides(shape):
    ph, pw = shape[1] + 2, shape[2] + 2
    return np.array([ph * pw, pw, 1], np.int64)


@njit(cache=True, nogil=True)
def _edge_key(position, low, step, span):
    """Key of the edge from padded index ``low`` to ``low + step``.

    ``-1`` when the edge is absent (a ``NEVER`` vertex) or lies on the padding (both vertices
    negative: the outside shell, whose pairs are all of length zero and precede every other cell).
    """
    a, b = position[low], position[low + step]
    latest, other = (a, b) if a > b else (b, a)
    if latest == NEVER or latest < 0:
        return np.int64(-1)
    return np.int64(latest) * span + other + position.size


@njit(cache=True, nogil=True)
def _coboundary(position, low, axis, strides, span, out):
    """Keys of the squares containing an edge, ascending, in ``out``; returns how many (<= 4)."""
    count = 0
    edge_step = strides[axis]
    for other in range(3):
        if other == axis:
            continue
        step = strides[other]
        for side in range(2):
            corner0 = low - side * step
            latest = second = np.int64(-2 * position.size)
            corner = 0
            for along_edge in range(2):
                for along_other in range(2):
                    value = np.int64(position[corner0 + along_edge * edge_step + along_other * step])
                    if value > latest:
                        second = latest
                        latest = value
                        corner = 2 * along_edge + along_other if axis < other else 2 * along_other + along_edge
                    elif value > second:
                        second = value
            if latest == NEVER:
                continue
            key = (latest * span + second + position.size) * 12 + (3 - axis - other) * 4 + corner
            j = count
            while j > 0 and out[j - 1] > key:
                out[j] = out[j - 1]
                j -= 1
            out[j] = key
            count += 1
    return count


@njit(cache=True, nogil=True)
def _latest_face_at(position, vertex, square_key, strides, span):
    """``(low, axis, key)`` of the last edge of a square whose latest vertex is ``vertex``.

    It is one of the two edges at that vertex: the one whose other end comes later.
    """
    local = square_key % 12
    normal, corner = local // 4, local % 4
    low_axis = 1 if normal == 0 else 0
    high_axis = 1 if normal == 2 else 2
    low_step = -strides[low_axis] if corner & 2 else strides[low_axis]
    high_step = -strides[high_axis] if corner & 1 else strides[high_axis]
    if position[vertex + low_step] > position[vertex + high_step]:
        axis, step = low_axis, low_step
    else:
        axis, step = high_axis, high_step
    low = min(vertex, vertex + step)
    return low, axis, _edge_key(position, low, strides[axis], span)


@njit(cache=True, nogil=True)
def _vertex_at(padded_index, latest, reverse):
    """Padded index of the vertex at a (non-negative) sweep position."""
    return padded_index[padded_index.size - 1 - latest] if reverse else padded_index[latest]


@njit(cache=True, nogil=True)
def _middle_bar(x, order, edge_key, square_key, span, reverse, births, deaths, count):
    """Append the dimension-1 bar of a (edge, square) pair if it has positive length."""
    birth = _voxel(order, edge_key // span, reverse)
    death = _voxel(order, square_key // 12 // span, reverse)
    if x[birth] == x[death]:
        return births, deaths, count
    if reverse:  # the complement's pair, read backwards
        birth, death = death, birth
    return _append(births, count, birth), _append(deaths, count, death), count + 1


@njit(cache=True, nogil=True)
def classify_edges(x, order, position, shape, reverse, edge_marks, z_start, z_stop):
    """First pass of dimension 1 over the edges whose lower vertex is in padded planes ``z_start:z_stop``.

    Edges that merged two components (``edge_marks`` of :func:`merge_components`) are cleared.
    An edge whose earliest coface has it as latest face is an apparent pair: its bar is emitted
    here. The keys of the other edges are returned for :func:`reduce_middle`.
    """
    pd, ph, pw = shape[0] + 2, shape[1] + 2, shape[2] + 2
    limits = (pd, ph, pw)
    strides = _strides(shape)
    span = np.int64(position.size) + order.size
    scratch = np.empty(4, np.int64)
    candidates = np.empty(64, np.int64)
    births = np.empty(64, np.int64)
    deaths = np.empty(64, np.int64)
    n_candidates = 0
    count = 0
    for z in range(max(z_start, 0), min(z_stop, pd)):
        for y in range(ph):
            for xx in range(pw):
                low = (z * ph + y) * pw + xx
                coords = (z, y, xx)
                for axis in range(3):
                    if coords[axis] + 1 >= limits[axis]:
                        continue
                    key = _edge_key(position, low, strides[axis], span)
                    if key < 0:
                        continue
                    latest = key // span
                    vertex = low if position[low] == latest else low + strides[axis]
                    if edge_marks[vertex] >> (2 * axis + (1 if vertex == low else 0)) & 1:
                        continue  # it merged two components: cleared
                    apparent = False
                    if _coboundary(position, low, axis, strides, span, scratch) > 0:
                        square = scratch[0]
                        if square // 12 // span == latest:
                            apparent = _latest_face_at(position, vertex, square, strides, span)[2] == key
                    if apparent:
                        births, deaths, count = _middle_bar(x, order, key, square, span, reverse, births, deaths, count)
                    else:
                        candidates = _append(candidates, n_candidates, key)
                        n_candidates += 1
    return candidates[:n_candidates], births[:count], deaths[:count]


@njit(cache=True, nogil=True)
def _heap_push(heap, size, value):
    """Push onto the binary min-heap ``heap[:size]``; returns the (possibly grown) heap."""
    heap = _append(heap, size, value)
    i = size
    while i > 0:
        up = (i - 1) // 2
        if heap[up] <= value:
            break
        heap[i] = heap[up]
        i = up
    heap[i] = value
    return heap


@njit(cache=True, nogil=True)
def _heap_pop(heap, size):
    """Remove and return the minimum of ``heap[:size]`` (``size > 0``)."""
    top = heap[0]
    size -= 1
    value = heap[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and heap[child + 1] < heap[child]:
            child += 1
        if heap[child] >= value:
            break
        heap[i] = heap[child]
        i = child
    if size > 0:
        heap[i] = value
    return top


@njit(cache=True, nogil=True)
def _pop_pivot(heap, size):
    """Smallest entry of the mod-2 column held in the heap, removed; ``(-1, 0)`` if it is zero.

    Equal entries cancel in pairs. Returns ``(pivot, new size)``.
    """
    while size > 0:
        pivot = _heap_pop(heap, size)
        size -= 1
        if size > 0 and heap[0] == pivot:
            _heap_pop(heap, size)
            size -= 1
            continue
        return pivot, size
    return np.int64(-1), 0


@njit(cache=True, nogil=True)
def reduce_middle(x, order, padded_index, position, shape, reverse, candidates):
    """Second pass of dimension 1: persistent cohomology of the non-apparent edges.

    Columns (coboundaries) are reduced from the latest edge to the earliest, the working column
    being a heap so that adding a short column to a long one is cheap. A pivot is owned either by
    a reduced column stored here or by an apparent pair, recognised on the fly and re-derived from
    its edge.
    """
    strides = _strides(shape)
    size = position.size
    span = np.int64(size) + order.size
    candidates = np.sort(candidates)
    owners = Dict.empty(key_type=types.int64, value_type=types.int64)
    column_start = np.zeros(64, np.int64)  # column j is pool[column_start[j]:column_start[j + 1]]
    pool = np.empty(1024, np.int64)
    pool_size = 0
    n_columns = 0
    heap = np.empty(64, np.int64)
    scratch = np.empty(4, np.int64)
    births = np.empty(64, np.int64)
    deaths = np.empty(64, np.int64)
    count = 0
    for c in range(candidates.size - 1, -1, -1):
        key = candidates[c]
        vertex = _vertex_at(padded_index, key // span, reverse)
        other = key % span - size
        other_vertex = other + size if other < 0 else _vertex_at(padded_index, other, reverse)
        step = abs(other_vertex - vertex)
        axis = 0 if step == strides[0] else (1 if step == strides[1] else 2)
        length = 0
        for i in range(_coboundary(position, min(vertex, other_vertex), axis, strides, span, scratch)):
            heap = _heap_push(heap, length, scratch[i])
            length += 1
        while True:
            pivot, length = _pop_pivot(heap, length)
            if pivot < 0:
                break
            # The column owning the pivot starts with it: add the rest of that column.
            if pivot in owners:
                owner = owners[pivot]
                for i in range(column_start[owner] + 1, column_start[owner + 1]):
                    heap = _heap_push(heap, length, pool[i])
                    length += 1
                continue
            square_vertex = _vertex_at(padded_index, pivot // 12 // span, reverse)
            face_low, face_axis, face_key = _latest_face_at(position, square_vertex, pivot, strides, span)
            if face_key != key:
                m = _coboundary(position, face_low, face_axis, strides, span, scratch)
                if m > 0 and scratch[0] == pivot:  # apparent pair (face, pivot)
                    for i in range(1, m):
                        heap = _heap_push(heap, length, scratch[i])
                        length += 1
                    continue
            owners[pivot] = n_columns
            pool = _append(pool, pool_size, pivot)
            pool_size += 1
            while True:
                entry, length = _pop_pivot(heap, length)
                if entry < 0:
                    break
                pool = _append(pool, pool_size, entry)
                pool_size += 1
            n_columns += 1
            column_start = _append(column_start, n_columns, pool_size)
            births, deaths, count = _middle_bar(x, order, key, pivot, span, reverse, births, deaths, count)
            break
    return births[:count], deaths[:count]


# --- drivers ----------------------------------------------------------------------------------
# One image: ``prepare`` sorts, then two sweeps (dimension 0 forward, the top dimension backward)
# and, for a 3D volume, the middle dimension on the sweep whose union-find used face edges:
# the forward one for "face" (V-construction of x), the reverse one for "full" (V-construction
# of the padded complement, which is the T-construction of x by duality).


@njit(cache=True, nogil=True)
def prepare(x, shape):
    """Sort the image and lay out its positions: ``(order, padded_index, forward, reverse)``."""
    order = descending_order(x)
    padded_index, forward, reverse = padded_positions(order, shape)
    return order, padded_index, forward, reverse


@njit(cache=True, nogil=True)
def needs_middle(shape, maxdim):
    """Whether dimension 1 of a 3D volume is asked for."""
    return shape[0] > 1 and maxdim >= 1


@njit(cache=True, nogil=True)
def new_edge_marks(position, shape, maxdim):
    """Zeroed clearing marks for the middle dimension (empty when it is not computed)."""
    return np.zeros(position.size if needs_middle(shape, maxdim) else 0, np.uint8)


@njit(cache=True, nogil=True)
def sweep(x, prepared, shape, full, reverse, edge_marks):
    """Dimension 0 (``reverse=False``) or the top dimension (``reverse=True``) of one image.

    The forward sweep uses the image's connectivity, the reverse one the dual connectivity; the
    sweep on face neighbours records the clearing marks of the middle dimension.
    """
    order, padded_index, forward, backward = prepared
    corner_neighbours = full != reverse
    marks = np.zeros(0, np.uint8) if corner_neighbours else edge_marks
    offsets = neighbour_offsets(shape, corner_neighbours)
    return merge_components(x, order, padded_index, backward if reverse else forward, offsets, reverse, marks)


@njit(cache=True, nogil=True)
def middle_candidates(x, prepared, shape, full, edge_marks, z_start, z_stop):
    """:func:`classify_edges` on the sweep that carries the middle dimension."""
    order, padded_index, forward, backward = prepared
    return classify_edges(x, order, backward if full else forward, shape, full, edge_marks, z_start, z_stop)


@njit(cache=True, nogil=True)
def middle_reduction(x, prepared, shape, full, candidates):
    """:func:`reduce_middle` on the sweep that carries the middle dimension."""
    order, padded_index, forward, backward = prepared
    return reduce_middle(x, order, padded_index, backward if full else forward, shape, full, candidates)


@njit(cache=True, nogil=True)
def assemble(order, shape, maxdim, births0, deaths0, births1, deaths1, births_top, deaths_top):
    """One table ``(dims, births, deaths)``: the essential bar, then dimensions 0, 1, 2.

    ``births1, deaths1`` are dimension 1 of a 3D volume (empty in 2D, where dimension 1 is the top).
    """
    top_dim = 1 if shape[0] == 1 else 2
    if maxdim < top_dim:
        births_top = deaths_top = np.zeros(0, np.int64)
    total = 1 + births0.size + births1.size + births_top.size
    dims = np.empty(total, np.int64)
    births = np.empty(total, np.int64)
    deaths = np.empty(total, np.int64)
    dims[0], births[0], deaths[0] = 0, order[0], -1
    k = 1
    for dim, dim_births, dim_deaths in ((0, births0, deaths0), (1, births1, deaths1), (top_dim, births_top, deaths_top)):
        dims[k:k + dim_births.size] = dim
        births[k:k + dim_births.size] = dim_births
        deaths[k:k + dim_births.size] = dim_deaths
        k += dim_births.size
    return dims, births, deaths


@njit(cache=True, nogil=True)
def image_pairs(x, shape, full, maxdim):
    """Every positive-length bar of one image, and its essential component.

    Parameters
    ----------
    x : 1D float32 or float64 array
        The image flattened in C order (super-level filtration).
    shape : tuple of 3 ints
        ``(D, H, W)``; ``(1, H, W)`` for a 2D image.
    full : bool
        ``"full"`` connectivity (T-construction) if true, else ``"face"`` (V-construction).
    maxdim : int
        Highest homology dimension to report.

    Returns
    -------
    dims, births, deaths : int64 arrays
        Flat indices of the critical voxels (``deaths == -1`` for the essential bar), by dimension.
    """
    prepared = prepare(x, shape)
    edge_marks = new_edge_marks(prepared[2], shape, maxdim)
    births0, deaths0 = sweep(x, prepared, shape, full, False, edge_marks)
    births_top = deaths_top = np.zeros(0, np.int64)
    if maxdim >= (1 if shape[0] == 1 else 2) or (full and needs_middle(shape, maxdim)):
        births_top, deaths_top = sweep(x, prepared, shape, full, True, edge_marks)
    births1 = deaths1 = np.zeros(0, np.int64)
    if needs_middle(shape, maxdim):
        candidates, apparent_births, apparent_deaths = middle_candidates(
            x, prepared, shape, full, edge_marks, 0, shape[0] + 2
        )
        reduced_births, reduced_deaths = middle_reduction(x, prepared, shape, full, candidates)
        births1 = np.concatenate((apparent_births, reduced_births))
        deaths1 = np.concatenate((apparent_deaths, reduced_deaths))
    return assemble(prepared[0], shape, maxdim, births0, deaths0, births1, deaths1, births_top, deaths_top)


@njit(cache=True, nogil=True)
def _extend(buffer, count, values):
    """Copy ``values`` to ``buffer[count:]``, growing the buffer; returns it."""
    if count + values.size > buffer.size:
        grown = np.empty(max(2 * buffer.size, count + values.size), buffer.dtype)
        grown[:count] = buffer[:count]
        buffer = grown
    buffer[count:count + values.size] = values
    return buffer


@njit(cache=True, nogil=True)
def images_pairs(images, start, stop, shape, full, maxdim):
    """:func:`image_pairs` of ``images[start:stop]`` (rows of flattened images), concatenated.

    Returns ``dims, births, deaths`` and the number of bars of each image.
    """
    counts = np.empty(stop - start, np.int64)
    dims = np.empty(1024, np.int64)
    births = np.empty(1024, np.int64)
    deaths = np.empty(1024, np.int64)
    total = 0
    for i in range(start, stop):
        item_dims, item_births, item_deaths = image_pairs(images[i], shape, full, maxdim)
        dims = _extend(dims, total, item_dims)
        births = _extend(births, total, item_births)
        deaths = _extend(deaths, total, item_deaths)
        total += item_dims.size
        counts[i - start] = item_dims.size
    return dims[:total], births[:total], deaths[:total], counts


# --- Python entry point -----------------------------------------------------------------------


def _check_size(spatial_shape: tuple[int, ...]) -> None:
    n = int(np.prod(spatial_shape))
    padded = int(np.prod([s + 2 for s in spatial_shape]))
    # Square keys hold about 24 n^2 (see the key layout above); positions are int32.
    if padded > MAX_VOXELS or 24 * (n + padded) ** 2 >= 2**63:
        raise ValueError(
            f"image of shape {spatial_shape} is too large for the 'unionfind' backend; use backend='cripser'."
        )


def _image_pairs_parallel(x: np.ndarray, shape: tuple[int, int, int], full: bool, maxdim: int, pool, workers: int):
    """:func:`image_pairs` of one large image with its independent stages on ``pool``'s threads.

    The two sweeps run side by side; the first pass of the middle dimension is split into slabs
    once the clearing marks are ready; only the final reduction is sequential.
    """
    prepared = prepare(x, shape)
    edge_marks = new_edge_marks(prepared[2], shape, maxdim)
    middle = needs_middle(shape, maxdim)
    dim0 = pool.submit(sweep, x, prepared, shape, full, False, edge_marks)
    top = None
    if maxdim >= (1 if shape[0] == 1 else 2) or (full and middle):
        top = pool.submit(sweep, x, prepared, shape, full, True, edge_marks)
    births1 = deaths1 = np.zeros(0, np.int64)
    if middle:
        (top if full else dim0).result()  # the clearing marks
        bounds = np.linspace(0, shape[0] + 2, 2 * workers + 1).astype(int)
        slabs = [
            pool.submit(middle_candidates, x, prepared, shape, full, edge_marks, int(a), int(b))
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
        parts = [slab.result() for slab in slabs]
        reduced = middle_reduction(x, prepared, shape, full, np.concatenate([part[0] for part in parts]))
        births1 = np.concatenate([part[1] for part in parts] + [reduced[0]])
        deaths1 = np.concatenate([part[2] for part in parts] + [reduced[1]])
    births0, deaths0 = dim0.result()
    births_top, deaths_top = top.result() if top is not None else (np.zeros(0, np.int64),) * 2
    return assemble(prepared[0], shape, maxdim, births0, deaths0, births1, deaths1, births_top, deaths_top)


def batch_pairs(images: np.ndarray, maxdim: int, full: bool, num_workers: int):
    """Bars of every image of a stack, computed on ``num_workers`` threads.

    Parameters
    ----------
    images : numpy.ndarray of float32 or float64, shape (n, H, W) or (n, D, H, W)
        Probability maps (super-level filtration), C-contiguous.
    maxdim : int
        Highest homology dimension.
    full : bool
        ``"full"`` connectivity if true, else ``"face"``.
    num_workers : int
        Threads. A stack with at least that many images is cut into contiguous runs of images,
        one numba call per run; fewer, larger images use the threads inside each image.

    Returns
    -------
    dims, births, deaths, counts : int64 arrays
        The tables of :func:`image_pairs` concatenated, and the number of bars of each image.
    """
    spatial = images.shape[1:]
    _check_size(spatial)
    shape = (1, *spatial) if len(spatial) == 2 else tuple(spatial)
    n = images.shape[0]
    flat = images.reshape(n, -1)
    workers = max(1, min(num_workers, n)) if n >= num_workers or flat.shape[1] < _PARALLEL_IMAGE_SIZE else num_workers
    if workers == 1:
        return images_pairs(flat, 0, n, shape, full, maxdim)
    with ThreadPoolExecutor(workers) as pool:
        if n >= workers:
            bounds = np.linspace(0, n, workers + 1).astype(int)
            parts = list(pool.map(lambda a, b: images_pairs(flat, a, b, shape, full, maxdim), bounds[:-1], bounds[1:]))
        else:
            tables = [_image_pairs_parallel(image, shape, full, maxdim, pool, workers) for image in flat]
            parts = [(*table, np.array([len(table[0])])) for table in tables]
    return tuple(np.concatenate([part[i] for part in parts]) for i in range(4))
