"""Cubical persistent homology by union-find, Alexander duality and apparent pairs (numba).

The engine behind the ``"unionfind"`` backend. For one image it computes

- dimension 0 by a *sweep*: union-find over the voxels in filtration order (decreasing ``x``;
  8/26-connected for ``"full"``, 4/6 for ``"face"``), elder rule;
- the top dimension (holes in 2D, cavities in 3D) by Alexander duality: the dimension-0 bars of the
  complement, swept in reverse order with the dual connectivity, the outside of the image being one
  component that exists from the start;
- dimension 1 of a 3D volume by persistent cohomology of the V-construction: of ``x`` itself for
  ``"face"``, of the padded complement for ``"full"`` (duality again turns the T-construction into
  it). Columns are cleared by the face-neighbour sweep, and nearly all pairs are *apparent* (seen
  from one edge and its four squares), so only a few percent of the edges need a reduction.

A sweep runs in two passes. The first, in memory order, points each voxel at its earliest earlier
neighbour; a voxel whose earlier neighbours fall apart into several groups inside its 3x3x3 cube
is a saddle candidate. Only those (a percent or two of the voxels) go through union-find, in sweep
order, the components being found along the pointers.

Positions: each voxel gets an int64 position that orders the sweep, on a grid padded by one voxel
on every spatial side (no bounds checks); the padding holds ``NEVER`` in the forward sweep (never
present) and negative numbers in the reverse sweep (present from the start). Float32 images without
a middle dimension use packed ``(value, flat index)`` keys, without sorting; otherwise positions
are ranks from a radix sort, equal values ordered by their depth inside the plateau. Any order
that refines the values gives the same positive-length bars (those of gudhi and CubicalRipser);
zero-length pairs are never emitted, and births/deaths are flat indices of the critical voxels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, types
from numba.extending import overload

from monai_topo.ph.host import thread_pool

NEVER = np.int64(np.iinfo(np.int64).max)
LAST_KEY = NEVER - 1  # reverse position of a key: LAST_KEY - key
MAX_VOXELS = int(np.iinfo(np.int32).max) - 1  # padded indices are int32
_RADIX_BITS = 11
_FIBONACCI = np.int64(-7046029254386353131)  # 2**64 / golden ratio, as int64: multiplicative hashing
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
def descending_order(values, ties):
    """Flat indices of ``values`` (float32/float64, 1D) by decreasing value.

    Equal values keep their order in ``ties`` (an order of all the flat indices; empty: by index).
    A stable least-significant-digit radix sort on the float bits; digits on which all keys
    agree (the exponent of probabilities, the padding of float32) are skipped.
    """
    order = np.arange(values.size).astype(np.int32) if ties.size == 0 else ties.astype(np.int32)
    keys = _descending_keys(values)[order]
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
def inverse_permutation(order):
    """``rank`` with ``rank[order[i]] == i`` (int32): half the time of numpy's scatter of an arange."""
    rank = np.empty(order.size, np.int32)
    for i in range(order.size):
        rank[order[i]] = i
    return rank


@njit(cache=True, nogil=True)
def plateau_order(x, shape, ascending):
    """Flat indices ordered by depth inside plateaus, the tie-break of the middle dimension's sweep.

    A plateau is a face-connected set of voxels of equal value; a voxel's depth is its face-step
    distance, inside the plateau, from the plateau's voxels that have a face neighbour coming
    strictly earlier in the sweep (larger ``x``; smaller ``x`` or the outside if ``ascending``).
    Sweeping each plateau from where it is entered, layer by layer, keeps the cycles born and
    killed inside it small; a raster order instead closes long cycles through the outside, whose
    reduction costs seconds on the background plateau (0) of a clipped probability map.
    Returns the voxels by increasing depth (``ascending``: decreasing, as the reverse sweep reads
    the forward order backwards), then by index.
    """
    d, h, w = shape
    n = x.size
    ph, pw = h + 2, w + 2
    steps = (ph * pw, -ph * pw, pw, -pw, 1, -1)
    # x on the padded grid, NaN outside: equal to nothing, so plateaus stop at the border.
    padded = np.full((d + 2) * ph * pw, np.nan, x.dtype)
    depth = np.full(padded.size, -1, np.int32)
    queue = np.empty(n, np.int32)
    tail = 0
    v = 0
    for z in range(d):
        for y in range(h):
            row = ((z + 1) * ph + y + 1) * pw + 1
            padded[row:row + w] = x[v:v + w]
            v += w
    for z in range(d):
        for y in range(h):
            row = ((z + 1) * ph + y + 1) * pw + 1
            for p in range(row, row + w):
                value = padded[p]
                entered = False
                for step in steps:
                    u = padded[p + step]
                    if ascending:
                        entered |= (u < value) | np.isnan(u)
                    else:
                        entered |= u > value
                if entered:
                    depth[p] = 0
                    queue[tail] = p
                    tail += 1
    head = 0
    while head < tail:
        p = queue[head]
        head += 1
        for step in steps:
            q = p + step
            if depth[q] < 0 and padded[q] == padded[p]:
                depth[q] = depth[p] + 1
                queue[tail] = q
                tail += 1
    # Counting sort by depth (0 for a plateau entered nowhere: the global extremum's).
    counts = np.zeros(depth.max() + 2, np.int64)
    for p in range(depth.size):
        counts[max(depth[p], 0) + 1] += 1
    counts[1] -= depth.size - n  # the padding is not a voxel
    starts = np.cumsum(counts)
    order = np.empty(n, np.int32)
    v = 0
    for z in range(d):
        for y in range(h):
            row = ((z + 1) * ph + y + 1) * pw + 1
            for p in range(row, row + w):
                level = max(depth[p], 0)
                slot = starts[level]
                starts[level] = slot + 1
                order[n - 1 - slot if ascending else slot] = v
                v += 1
    return order


@njit(cache=True, nogil=True)
def padded_index_of(shape, z, y, x):
    """Padded index of voxel ``(z, y, x)`` of an image of ``shape`` ``(D, H, W)``: one voxel of
    padding on every side, none along ``D`` for a 2D image (``D == 1``)."""
    d, h, w = shape
    return ((z + (1 if d > 1 else 0)) * (h + 2) + y + 1) * (w + 2) + x + 1


@njit(cache=True, nogil=True)
def padded_size(shape):
    """Number of cells of the padded grid of :func:`padded_index_of`."""
    d, h, w = shape
    return (d + (2 if d > 1 else 0)) * (h + 2) * (w + 2)


@njit(cache=True, nogil=True)
def padded_positions(order, shape):
    """Padded index of each rank and the forward / reverse position arrays on the padded grid.

    ``shape`` is ``(D, H, W)`` (``D == 1`` and no padding along it for a 2D image).
    Forward position: the rank, ``NEVER`` on the padding. Reverse position: ``n - 1 - rank``,
    and ``index - size`` (negative, distinct, ordered) on the padding. Positions are int64 so
    that the sweeps also run on :func:`key_positions`.
    """
    d, h, w = shape
    size = padded_size(shape)
    n = order.size
    rank = inverse_permutation(order)
    forward = np.full(size, NEVER, np.int64)
    reverse = np.arange(-size, 0)
    padded_index = np.empty(n, np.int32)
    v = 0
    for z in range(d):  # in memory order: no divisions, and two of the three writes are sequential
        for y in range(h):
            p = padded_index_of(shape, z, y, 0)
            for _ in range(w):
                r = rank[v]
                padded_index[r] = p
                forward[p] = r
                reverse[p] = n - 1 - r
                p += 1
                v += 1
    return padded_index, forward, reverse


@njit(cache=True, nogil=True)
def key_positions(x, shape):
    """Positions without sorting: ``(value order, flat index)`` packed in one int64.

    For float32 values >= 0 the bits order like the values, so ``(0x7FFFFFFF - bits) << 32 | index``
    sorts exactly as the ranks do and compares in one instruction. Returns
    ``(done, forward, reverse, essential voxel)``, the positions as in :func:`padded_positions`
    (reverse: ``LAST_KEY - key``); ``done`` is false when a value is negative or the image is
    float64 (then use the ranks).
    """
    failed = (False, np.zeros(0, np.int64), np.zeros(0, np.int64), np.int64(-1))
    if x.itemsize != 4:
        return failed
    bits = x.view(np.uint32)
    d, h, w = shape
    size = padded_size(shape)
    forward = np.full(size, NEVER, np.int64)
    reverse = np.arange(-size, 0)
    first = NEVER
    v = 0
    for z in range(d):
        for y in range(h):
            p = padded_index_of(shape, z, y, 0)
            for _ in range(w):
                b = np.int64(bits[v])
                if b == 0x80000000:  # -0.0 is 0.0
                    b = 0
                if b > 0x7FFFFFFF:
                    return failed
                key = (0x7FFFFFFF - b) << 32 | v
                forward[p] = key
                reverse[p] = LAST_KEY - key
                first = min(first, key)
                p += 1
                v += 1
    return True, forward, reverse, first & 0xFFFFFFFF


# The 3x3x3 cube around a voxel as a 27-bit mask, bit (dz + 1) * 9 + (dy + 1) * 3 + (dx + 1); the
# centre is bit 13. A 2D image uses the middle plane only. Dilating a set of bits inside the cube
# (separably, with masks that stop shifts at the cube's faces) finds which neighbours are joined
# through other neighbours, without looking outside the cube.
def _cube_mask(keep) -> int:
    return sum(1 << b for b in range(27) if keep(b // 9 - 1, b // 3 % 3 - 1, b % 3 - 1))


_CUBE = _cube_mask(lambda dz, dy, dx: True)
_FROM_X_BELOW = _cube_mask(lambda dz, dy, dx: dx > -1)  # cells that a shift by +1 in x may reach
_FROM_X_ABOVE = _cube_mask(lambda dz, dy, dx: dx < 1)
_FROM_Y_BELOW = _cube_mask(lambda dz, dy, dx: dy > -1)
_FROM_Y_ABOVE = _cube_mask(lambda dz, dy, dx: dy < 1)
_CENTRE = 13
# Face neighbours in the order -z, +z, -y, +y, -x, +x: the direction codes of the edge marks.
_FACE_BITS = np.array([4, 22, 10, 16, 12, 14], np.int64)
_FACE_CODE = np.full(27, -1, np.int64)
_FACE_CODE[_FACE_BITS] = np.arange(6)


@njit(cache=True, nogil=True)
def _dilate(bits, corners):
    """Grow a set of cube cells by one step of 26- (``corners``) or 6-adjacency."""
    x_grown = bits | ((bits << 1) & _FROM_X_BELOW) | ((bits >> 1) & _FROM_X_ABOVE)
    if corners:
        y_grown = x_grown | ((x_grown << 3) & _FROM_Y_BELOW) | ((x_grown >> 3) & _FROM_Y_ABOVE)
        return (y_grown | (y_grown << 9) | (y_grown >> 9)) & _CUBE
    y_grown = ((bits << 3) & _FROM_Y_BELOW) | ((bits >> 3) & _FROM_Y_ABOVE)
    return (x_grown | y_grown | (bits << 9) | (bits >> 9)) & _CUBE


def _plane_splits(corners: bool) -> np.ndarray:
    """For each 3x3 in-plane mask of earlier neighbours: do the relevant ones fall apart in groups?"""
    splits = np.zeros(512, np.bool_)
    relevant_bits = [b for b in range(9) if b != 4 and (corners or b in (1, 3, 5, 7))]
    for present in range(512):
        present &= ~(1 << 4)
        relevant = sum(1 << b for b in relevant_bits if present >> b & 1)
        if relevant == 0:
            continue
        group = relevant & -relevant
        while True:
            cube_group = _dilate.py_func(group << 9, corners) >> 9 & 511
            grown = cube_group & present
            if grown == group:
                break
            group = grown
        splits[present] = bool(relevant & ~group)
    return splits


# The saddle test of 2D images, tabulated: row 0 face (4-) neighbours, row 1 all 8.
_PLANE_SPLITS = np.stack([_plane_splits(False), _plane_splits(True)])


@njit(cache=True, nogil=True)
def cube_offsets(shape):
    """Flat offsets on the padded grid of the 27 cube cells, and the bits of a voxel's neighbours.

    ``shape`` is ``(D, H, W)``, ``D == 1`` for a 2D image (then only the middle plane is used).
    Returns ``(offsets, corner_bits, face_bits)``: all neighbours, and face neighbours in the order
    of the direction codes.
    """
    d, h, w = shape
    offsets = np.empty(27, np.int64)
    for b in range(27):
        offsets[b] = (b // 9 - 1) * (h + 2) * (w + 2) + (b // 3 % 3 - 1) * (w + 2) + b % 3 - 1
    corner_bits = np.array([b for b in range(27) if b != _CENTRE and (d > 1 or b // 9 == 1)], np.int64)
    face_bits = _FACE_BITS if d > 1 else _FACE_BITS[2:]
    return offsets, corner_bits, face_bits


@njit(cache=True, nogil=True)
def _at_position(by_rank, position, reverse):
    """The entry of ``by_rank`` (a table indexed by rank) for a (non-negative) sweep position."""
    return by_rank[by_rank.size - 1 - position] if reverse else by_rank[position]


@njit(cache=True, nogil=True)
def voxel_at(prepared, position, reverse):
    """Flat index in the image of the voxel at a sweep position (positions are keys where
    ``prepared.order`` is empty)."""
    if prepared.order.size == 0:
        return (LAST_KEY - position if reverse else position) & 0xFFFFFFFF
    return _at_position(prepared.order, position, reverse)


@njit(cache=True, nogil=True)
def padded_at(prepared, shape, position, reverse):
    """Padded index of the voxel at a sweep position."""
    if prepared.order.size > 0:
        return _at_position(prepared.padded_index, position, reverse)
    z, rest = divmod(voxel_at(prepared, position, reverse), shape[1] * shape[2])
    y, x = divmod(rest, shape[2])
    return padded_index_of(shape, z, y, x)


@njit(cache=True, nogil=True)
def grown(buffer, needed):
    """A copy of ``buffer`` with room for at least ``needed`` items (at least twice the size)."""
    bigger = np.empty(max(16, 2 * buffer.size, needed), buffer.dtype)
    bigger[:buffer.size] = buffer
    return bigger


@njit(cache=True, nogil=True)
def insert_sorted(buffer, count, value):
    """Insert ``value`` into the ascending run ``buffer[:count]`` (room for one more is the
    caller's business); returns ``count + 1``."""
    j = count
    while j > 0 and buffer[j - 1] > value:
        buffer[j] = buffer[j - 1]
        j -= 1
    buffer[j] = value
    return count + 1


@njit(cache=True, nogil=True)
def _append(buffer, count, value):
    """Write ``value`` at ``count``, growing ``buffer`` when full; returns the buffer.

    Assigning the returned array costs reference counting: hot loops call :func:`grown` only
    when needed and write in place instead.
    """
    if count == buffer.size:
        buffer = grown(buffer, count + 1)
    buffer[count] = value
    return buffer


@njit(cache=True, nogil=True)
def _settle_row(row, row_present, relevant_mask, row_bit, offsets, splits_table, corners, ascent, position,
                edge_marks, candidates, n_candidates):
    """One row of one sweep in :func:`ascend`: pointers, saddle candidates (appended), marks.

    Called per row, not per voxel: handing arrays to a function costs reference counting.
    """
    mark = edge_marks.size > 0
    for i in range(row_present.size):
        p = row + i
        present = row_present[i]
        relevant = present & relevant_mask
        if relevant == 0:
            ascent[p] = p
            continue
        ascent[p] = p + offsets[row_bit[i]]
        if splits_table.size > 0:  # 2D
            splits = splits_table[(present >> 9) & 511]
        else:
            group = relevant & -relevant
            while True:
                grown = _dilate(group, corners) & present
                if grown == group:
                    break
                group = grown
            splits = (relevant & ~group) != 0
        if splits:
            candidates = _append(candidates, n_candidates, position[p])
            n_candidates += 1
        elif mark:
            edge_marks[p] |= 1 << _FACE_CODE[row_bit[i]]
    return candidates, n_candidates


@njit(cache=True, nogil=True)
def _row_earliest(position, row, bits, offsets, earliest, earliest_bit):
    """For each voxel of a row: the earliest position among its neighbours ``bits`` and which bit it is."""
    earliest[:] = position[row:row + earliest.size]
    for b in bits:
        step = offsets[b]
        for i in range(earliest.size):
            q_position = position[row + i + step]
            earliest_bit[i] = b if q_position < earliest[i] else earliest_bit[i]
            earliest[i] = min(earliest[i], q_position)


@njit(cache=True, nogil=True)
def ascend(forward, reverse, shape, full, ascents, edge_marks, row_start, row_stop):
    """First pass of both sweeps, in memory order over the rows ``row_start:row_stop`` (``z * H + y``).

    For each voxel, looks at which neighbours come earlier in the sweep ("present"); the reverse
    sweep's present neighbours are exactly the others, so one set of comparisons serves both. A
    voxel with none starts a component (``ascent[p] = p``); otherwise ``ascent[p]`` is its
    earliest present neighbour, which it joins (``ascents[0]`` forward, ``ascents[1]`` reverse).
    Only where the present neighbours fall apart into several groups inside the 3x3x3 cube (26- or
    6-adjacency) can two components meet: those voxels, the saddle candidates, are returned (their
    positions, forward and reverse) for :func:`merge_at_saddles`. The edge to the earliest
    neighbour of any other voxel is its only merging edge (``edge_marks``, when non-empty: marks of
    the face-neighbour sweep of a 3D volume, the reverse one for ``full``).
    """
    d, h, w = shape
    offsets, corner_bits, face_bits = cube_offsets(shape)
    forward_bits, reverse_bits = (corner_bits, face_bits) if full else (face_bits, corner_bits)
    neighbours = forward_mask = reverse_mask = 0
    for b in corner_bits:
        neighbours |= 1 << b
    for b in forward_bits:
        forward_mask |= 1 << b
    for b in reverse_bits:
        reverse_mask |= 1 << b
    no_table = np.zeros(0, np.bool_)
    forward_splits = _PLANE_SPLITS[1 if full else 0] if d == 1 else no_table
    reverse_splits = _PLANE_SPLITS[0 if full else 1] if d == 1 else no_table
    no_marks = np.zeros(0, np.uint8)
    forward_marks, reverse_marks = (no_marks, edge_marks) if full else (edge_marks, no_marks)
    forward_ascent, reverse_ascent = ascents[0], ascents[1]
    forward_candidates = np.empty(64, np.int64)
    reverse_candidates = np.empty(64, np.int64)
    n_forward = n_reverse = 0
    # A row at a time, neighbour by neighbour: long branch-free loops that the compiler vectorises.
    row_present = np.empty(w, np.int64)
    row_first, row_first_bit = np.empty(w, np.int64), np.empty(w, np.int64)  # forward sweep's earliest
    row_last, row_last_bit = np.empty(w, np.int64), np.empty(w, np.int64)  # reverse sweep's earliest
    for r in range(max(row_start, 0), min(row_stop, d * h)):
        z, y = divmod(r, h)
        row = padded_index_of(shape, z, y, 0)
        row_present[:] = 0
        for b in corner_bits:
            step = offsets[b]
            for i in range(w):
                row_present[i] |= np.int64(forward[row + i + step] < forward[row + i]) << b
        _row_earliest(forward, row, forward_bits, offsets, row_first, row_first_bit)
        _row_earliest(reverse, row, reverse_bits, offsets, row_last, row_last_bit)
        forward_candidates, n_forward = _settle_row(
            row, row_present, forward_mask, row_first_bit, offsets, forward_splits, full, forward_ascent, forward,
            forward_marks, forward_candidates, n_forward,
        )
        for i in range(w):
            row_present[i] = ~row_present[i] & neighbours
        reverse_candidates, n_reverse = _settle_row(
            row, row_present, reverse_mask, row_last_bit, offsets, reverse_splits, not full, reverse_ascent, reverse,
            reverse_marks, reverse_candidates, n_reverse,
        )
    return forward_candidates[:n_forward], reverse_candidates[:n_reverse]


@njit(cache=True, nogil=True)
def _component(ascent, position, q):
    """Root of ``q``'s component by following ``ascent`` (with path compression); -1: the outside."""
    root = q
    while position[root] >= 0 and ascent[root] != root:
        root = ascent[root]
    while q != root and position[q] >= 0:
        ascent[q], q = root, ascent[q]
    return -1 if position[root] < 0 else root


@njit(cache=True, nogil=True)
def merge_at_saddles(x, prepared, position, shape, corners, reverse, ascent, candidates, edge_marks):
    """Second pass of a sweep: union-find at the saddle candidates, in sweep order, elder rule.

    A component is represented by the voxel where it was born (a root: ``ascent[r] == r``); merging
    points the younger root at the elder, or at the padding for the outside component of the
    reverse sweep (positions from :func:`padded_positions` or :func:`key_positions`). ``corners``
    selects 26- (8-) over 6- (4-) connectivity. When ``edge_marks`` is non-empty, bit ``k`` of
    ``edge_marks[p]`` records that the edge from ``p`` to its face neighbour ``k`` merged two
    components (the clearing set of the dimension-1 reduction).

    Returns flat indices ``(births, deaths)`` of the positive-length bars in super-level terms
    (``x[births] > x[deaths]``): dimension 0 forward, the top dimension in reverse.
    """
    offsets, corner_bits, face_bits = cube_offsets(shape)
    bits = corner_bits if corners else face_bits
    mark = edge_marks.size > 0
    outside_cell = 0  # a padding cell: present from the start in the reverse sweep
    births = np.empty(64, np.int64)
    deaths = np.empty(64, np.int64)
    count = 0
    earlier = np.empty(bits.size, np.int64)
    earlier_position = np.empty(bits.size, np.int64)
    for i in np.sort(candidates):
        p = padded_at(prepared, shape, i, reverse)
        n_earlier = 0
        for k in range(bits.size):
            q_position = position[p + offsets[bits[k]]]
            if q_position >= i:
                continue
            j = n_earlier
            while j > 0 and earlier_position[j - 1] > q_position:  # edge-key order
                earlier[j] = earlier[j - 1]
                earlier_position[j] = earlier_position[j - 1]
                j -= 1
            earlier[j] = k
            earlier_position[j] = q_position
            n_earlier += 1
        root = -2
        for j in range(n_earlier):
            k = earlier[j]
            r = _component(ascent, position, p + offsets[bits[k]])
            if r == root:
                continue
            if mark:
                edge_marks[p] |= 1 << k
            if root == -2:  # the voxel joins its first neighbour's component
                root = r
                continue
            # The outside (-1) is the eldest; otherwise the earlier-born root.
            if r == -1 or (root != -1 and position[r] < position[root]):
                root, younger = r, root
            else:
                younger = r
            ascent[younger] = outside_cell if root == -1 else root
            younger_birth = voxel_at(prepared, position[younger], reverse)
            current = voxel_at(prepared, i, reverse)
            if x[younger_birth] == x[current]:
                continue
            # Forward: the component born at ``younger_birth`` dies at ``current``. Reverse: a
            # complement component, i.e. a hole born at ``current`` and filled at ``younger_birth``.
            birth, death = (current, younger_birth) if reverse else (younger_birth, current)
            births = _append(births, count, birth)
            deaths = _append(deaths, count, death)
            count += 1
    return births[:count], deaths[:count]


# --- dimension 1 of a 3D volume ---------------------------------------------------------------
# Cells are ordered by the positions of their vertices, latest first: an edge by (latest, other),
# a square by (latest, second latest, local code). In this lexicographic order an edge and the
# first square around it usually share their latest vertex, the edge being the square's last face:
# an apparent pair, of length zero, found at sight. Keys are int64:
#   edge   = latest * span + (other + size)
#   square = (latest * span + (second + size)) * 12 + normal axis * 4 + corner
# with ``size`` the padded grid size (positions on the padding are >= -size) and
# ``span = size + n``; the corner bits say on which side of the square's lower (bit 1) and
# higher (bit 0) axis the latest vertex lies.


@njit(cache=True, nogil=True)
def _pair_key(latest, other, size, span):
    """``latest * span + (other + size)``: the key of an edge, and of a square before its local code."""
    return np.int64(latest) * span + other + size


@njit(cache=True, nogil=True)
def _square_key(latest, second, size, span, code):
    """Key of a square from its latest and second-latest vertex positions and its local ``code``
    (normal axis * 4 + corner)."""
    return _pair_key(latest, second, size, span) * 12 + code


@njit(cache=True, nogil=True)
def _edge_latest(key, span):
    """The latest vertex position of an edge key."""
    return key // span


@njit(cache=True, nogil=True)
def _square_latest(key, span):
    """The latest vertex position of a square key."""
    return key // 12 // span


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
    return _pair_key(latest, other, position.size, span)


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
            count = insert_sorted(out, count, _square_key(latest, second, position.size, span,
                                                          (3 - axis - other) * 4 + corner))
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
def _earliest_coface_in_star(position, vertex, other, axis, strides, span):
    """The first square containing the edge ``(vertex, other)`` among those whose latest vertex is ``vertex``.

    ``vertex`` is the edge's latest end and ``other`` its other end, along ``axis``. Returns the
    square's key (-1 if every square around the edge has a later vertex) and whether the edge is
    that square's latest face, i.e. whether they form an apparent pair. Reads only the squares'
    eight other vertices: no key of a later square is needed.
    """
    latest = position[vertex]
    other_position = position[other]
    upper_end = 1 if vertex > other else 0  # the latest vertex's side along the edge's axis
    best_second = np.int64(NEVER)
    best_code = 0
    best_apparent = False
    for b in range(3):
        if b == axis:
            continue
        for side in range(2):
            step = strides[b] if side else -strides[b]
            beside = position[vertex + step]  # next to the latest vertex
            across = position[other + step]
            if beside >= latest or across >= latest:
                continue
            second = max(other_position, beside, across)
            bit_edge, bit_other = upper_end, 1 - side
            corner = 2 * bit_edge + bit_other if axis < b else 2 * bit_other + bit_edge
            code = (3 - axis - b) * 4 + corner
            if second < best_second or (second == best_second and code < best_code):
                best_second, best_code = second, code
                best_apparent = other_position > beside
    if best_second == NEVER:
        return np.int64(-1), False
    return _square_key(latest, best_second, position.size, span, best_code), best_apparent


@njit(cache=True, nogil=True)
def classify_edges(position, shape, n, edge_marks, z_start, z_stop):
    """First pass of dimension 1 over the edges whose lower vertex is in padded planes ``z_start:z_stop``.

    Edges that merged two components (``edge_marks`` of the sweeps) are cleared;
    an edge whose earliest coface has it as latest face is an apparent pair, of length zero (both
    cells enter with the same voxel) and never needed again. Returns the keys of the other edges,
    the columns of :func:`reduce_middle`. ``n`` is the number of voxels.
    """
    pd, ph, pw = shape[0] + 2, shape[1] + 2, shape[2] + 2
    limits = (pd, ph, pw)
    strides = _strides(shape)
    span = np.int64(position.size) + n
    candidates = np.empty(64, np.int64)
    n_candidates = 0
    for z in range(max(z_start, 0), min(z_stop, pd)):
        for y in range(ph):
            for xx in range(pw):
                low = (z * ph + y) * pw + xx
                coords = (z, y, xx)
                for axis in range(3):
                    if coords[axis] + 1 >= limits[axis]:
                        continue
                    high = low + strides[axis]
                    key = _edge_key(position, low, strides[axis], span)
                    if key < 0:
                        continue
                    vertex, other = (low, high) if position[low] > position[high] else (high, low)
                    if edge_marks[vertex] >> (2 * axis + (1 if vertex == low else 0)) & 1:
                        continue  # it merged two components: cleared
                    if not _earliest_coface_in_star(position, vertex, other, axis, strides, span)[1]:
                        candidates = _append(candidates, n_candidates, key)
                        n_candidates += 1
    return candidates[:n_candidates]


@njit(cache=True, nogil=True)
def heap_push(heap, size, value):
    """Push onto the binary min-heap ``heap[:size]`` (room for one more is the caller's business)."""
    i = size
    while i > 0:
        up = (i - 1) // 2
        if heap[up] <= value:
            break
        heap[i] = heap[up]
        i = up
    heap[i] = value


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
def pop_pivot(heap, size):
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
def store_reduced_column(pool, used, pivot, heap, size):
    """Write ``pivot`` and then the rest of the heap's column, in order, to ``pool[used:]``.

    Returns ``(pool, used)``: the pool (grown if needed) and its new fill.
    """
    if used + 1 + size > pool.size:
        pool = grown(pool, used + 1 + size)
    pool[used] = pivot
    used += 1
    while True:
        entry, size = pop_pivot(heap, size)
        if entry < 0:
            return pool, used
        pool[used] = entry
        used += 1


@njit(cache=True, nogil=True)
def _slot(keys, key):
    """Slot of ``key`` in the open-addressing table ``keys`` (-1 = empty): where it is or would go."""
    mask = keys.size - 1
    i = (key * _FIBONACCI) >> 20 & mask  # the table size is a power of 2
    while keys[i] != key and keys[i] != -1:
        i = (i + 1) & mask
    return i


@njit(cache=True, nogil=True)
def _rehashed(keys, values):
    """The table twice as large, same entries."""
    new_keys = np.full(2 * keys.size, -1, np.int64)
    new_values = np.empty(2 * keys.size, np.int64)
    for j in range(keys.size):
        if keys[j] != -1:
            i = _slot(new_keys, keys[j])
            new_keys[i], new_values[i] = keys[j], values[j]
    return new_keys, new_values


@njit(cache=True, nogil=True)
def reduce_middle(x, prepared, position, shape, reverse, candidates):
    """Second pass of dimension 1: persistent cohomology of the non-apparent edges.

    Columns (coboundaries) are reduced from the latest edge to the earliest, the working column
    being a heap so that adding a short column to a long one is cheap. A pivot is owned either by
    a reduced column stored here or by an apparent pair, recognised on the fly and re-derived from
    its edge.
    """
    strides = _strides(shape)
    size = position.size
    span = np.int64(size) + prepared.order.size
    candidates = np.sort(candidates)
    owner_keys = np.full(1024, -1, np.int64)  # hash table: pivot square -> column
    owner_columns = np.empty(1024, np.int64)
    column_start = np.zeros(64, np.int64)  # column j is pool[column_start[j]:column_start[j + 1]]
    pool = np.empty(1024, np.int64)
    pool_size = 0
    n_columns = 0
    heap = np.empty(64, np.int64)  # room for a coboundary; grown before every other addition
    scratch = np.empty(4, np.int64)
    births = np.empty(64, np.int64)
    deaths = np.empty(64, np.int64)
    count = 0
    for c in range(candidates.size - 1, -1, -1):
        key = candidates[c]
        vertex = padded_at(prepared, shape, _edge_latest(key, span), reverse)
        other = key % span - size
        other_vertex = other + size if other < 0 else padded_at(prepared, shape, other, reverse)
        step = abs(other_vertex - vertex)
        axis = 0 if step == strides[0] else (1 if step == strides[1] else 2)
        length = 0
        for i in range(_coboundary(position, min(vertex, other_vertex), axis, strides, span, scratch)):
            heap_push(heap, length, scratch[i])
            length += 1
        while True:
            pivot, length = pop_pivot(heap, length)
            if pivot < 0:
                break
            # The column owning the pivot starts with it: add the rest of that column.
            # An apparent pair (face, pivot) is recognised from the pivot's neighbourhood alone.
            square_vertex = padded_at(prepared, shape, _square_latest(pivot, span), reverse)
            face_low, face_axis, face_key = _latest_face_at(position, square_vertex, pivot, strides, span)
            if face_key != key:
                face_other = face_low if face_low != square_vertex else face_low + strides[face_axis]
                coface, apparent = _earliest_coface_in_star(position, square_vertex, face_other, face_axis, strides, span)
                if apparent and coface == pivot:
                    m = _coboundary(position, face_low, face_axis, strides, span, scratch)
                    if length + m > heap.size:
                        heap = grown(heap, length + m)
                    for i in range(1, m):
                        heap_push(heap, length, scratch[i])
                        length += 1
                    continue
            slot = _slot(owner_keys, pivot)
            if owner_keys[slot] == pivot:
                start, stop = column_start[owner_columns[slot]], column_start[owner_columns[slot] + 1]
                if length + stop - start > heap.size:
                    heap = grown(heap, length + stop - start)
                for i in range(start + 1, stop):
                    heap_push(heap, length, pool[i])
                    length += 1
                continue
            # A new pivot: store the reduced column, starting with it.
            if 2 * (n_columns + 1) > owner_keys.size:
                owner_keys, owner_columns = _rehashed(owner_keys, owner_columns)
            slot = _slot(owner_keys, pivot)
            owner_keys[slot], owner_columns[slot] = pivot, n_columns
            pool, pool_size = store_reduced_column(pool, pool_size, pivot, heap, length)
            n_columns += 1
            column_start = _append(column_start, n_columns, pool_size)
            birth = voxel_at(prepared, _edge_latest(key, span), reverse)
            death = voxel_at(prepared, _square_latest(pivot, span), reverse)
            if x[birth] != x[death]:
                if reverse:  # the complement's pair, read backwards
                    birth, death = death, birth
                births = _append(births, count, birth)
                deaths = _append(deaths, count, death)
                count += 1
            break
    return births[:count], deaths[:count]


# --- drivers ----------------------------------------------------------------------------------
# One image: ``prepare`` lays out the positions, then two sweeps (dimension 0 forward, the top
# dimension backward) and, for a 3D volume, the middle dimension on the sweep whose union-find
# used face edges: the forward one for "face" (V-construction of x), the reverse one for "full"
# (V-construction of the padded complement, which is the T-construction of x by duality).


class Prepared(NamedTuple):
    """Positions of one image, from :func:`prepare` (a tuple to numba)."""

    order: np.ndarray  # rank -> flat voxel index; empty where positions are keys
    padded_index: np.ndarray  # rank -> padded index; empty likewise
    forward: np.ndarray  # padded index -> position in the forward sweep
    reverse: np.ndarray  # padded index -> position in the reverse sweep
    essential: np.int64  # flat index of the voxel where the essential component is born


@njit(cache=True, nogil=True)
def prepare(x, shape, full, maxdim):
    """:class:`Prepared` positions of one image.

    Sweeps alone compare positions, so float32 images use :func:`key_positions` (no sort; ``order``
    and ``padded_index`` empty). The middle dimension packs ranks into its keys: it sorts, equal
    values by :func:`plateau_order` of its sweep (reverse for ``full``).
    """
    no_ranks = np.zeros(0, np.int32)
    if not needs_middle(shape, maxdim):
        done, forward, reverse, essential = key_positions(x, shape)
        if done:
            return Prepared(no_ranks, no_ranks, forward, reverse, essential)
    ties = plateau_order(x, shape, full) if needs_middle(shape, maxdim) else np.zeros(0, np.int32)
    order = descending_order(x, ties)
    padded_index, forward, reverse = padded_positions(order, shape)
    return Prepared(order, padded_index, forward, reverse, np.int64(order[0]))


@njit(cache=True, nogil=True)
def needs_middle(shape, maxdim):
    """Whether dimension 1 of a 3D volume is asked for."""
    return shape[0] > 1 and maxdim >= 1


@njit(cache=True, nogil=True)
def needs_top(shape, full, maxdim):
    """Whether the reverse sweep is needed: for the top dimension, or for the clearing marks of "full"."""
    return maxdim >= (1 if shape[0] == 1 else 2) or (full and needs_middle(shape, maxdim))


@njit(cache=True, nogil=True)
def new_edge_marks(position, shape, maxdim):
    """Zeroed clearing marks for the middle dimension (empty when it is not computed)."""
    return np.zeros(position.size if needs_middle(shape, maxdim) else 0, np.uint8)


@njit(cache=True, nogil=True)
def new_ascents(prepared):
    """The pointer arrays of the two sweeps (filled by :func:`first_pass`)."""
    return np.empty((2, prepared.forward.size), np.int32)


@njit(cache=True, nogil=True)
def first_pass(prepared, shape, full, ascents, edge_marks, row_start, row_stop):
    """:func:`ascend` of both sweeps over rows ``row_start:row_stop``: ``(forward, reverse)`` candidates."""
    return ascend(prepared.forward, prepared.reverse, shape, full, ascents, edge_marks, row_start, row_stop)


@njit(cache=True, nogil=True)
def saddle_pass(x, prepared, shape, full, reverse, ascents, candidates, edge_marks):
    """Dimension 0 (``reverse=False``) or the top dimension (``reverse=True``) from the first pass.

    The forward sweep uses the image's connectivity, the reverse one the dual connectivity; the
    sweep on face neighbours records the clearing marks of the middle dimension.
    """
    corners = full != reverse
    marks = np.zeros(0, np.uint8) if corners else edge_marks
    position = prepared.reverse if reverse else prepared.forward
    return merge_at_saddles(x, prepared, position, shape, corners, reverse, ascents[int(reverse)],
                            candidates, marks)


@njit(cache=True, nogil=True)
def middle_candidates(prepared, shape, full, edge_marks, z_start, z_stop):
    """:func:`classify_edges` on the sweep that carries the middle dimension."""
    position = prepared.reverse if full else prepared.forward
    return classify_edges(position, shape, prepared.order.size, edge_marks, z_start, z_stop)


@njit(cache=True, nogil=True)
def middle_reduction(x, prepared, shape, full, candidates):
    """:func:`reduce_middle` on the sweep that carries the middle dimension."""
    return reduce_middle(x, prepared, prepared.reverse if full else prepared.forward, shape, full, candidates)


@njit(cache=True, nogil=True)
def assemble(essential, shape, maxdim, births0, deaths0, births1, deaths1, births_top, deaths_top):
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
    dims[0], births[0], deaths[0] = 0, essential, -1
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
    prepared = prepare(x, shape, full, maxdim)
    edge_marks = new_edge_marks(prepared.forward, shape, maxdim)
    ascents = new_ascents(prepared)
    forward_candidates, reverse_candidates = first_pass(prepared, shape, full, ascents, edge_marks, 0, shape[0] * shape[1])
    births0, deaths0 = saddle_pass(x, prepared, shape, full, False, ascents, forward_candidates, edge_marks)
    births_top = deaths_top = np.zeros(0, np.int64)
    if needs_top(shape, full, maxdim):
        births_top, deaths_top = saddle_pass(x, prepared, shape, full, True, ascents, reverse_candidates, edge_marks)
    births1 = deaths1 = np.zeros(0, np.int64)
    if needs_middle(shape, maxdim):
        candidates = middle_candidates(prepared, shape, full, edge_marks, 0, shape[0] + 2)
        births1, deaths1 = middle_reduction(x, prepared, shape, full, candidates)
    return assemble(prepared.essential, shape, maxdim, births0, deaths0, births1, deaths1, births_top, deaths_top)


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
    # Square keys hold about 24 n^2 (see the key layout above); padded indices are int32.
    if padded > MAX_VOXELS or 24 * (n + padded) ** 2 >= 2**63:
        raise ValueError(
            f"image of shape {spatial_shape} is too large for the 'unionfind' backend; use backend='cripser'."
        )


def _image_pairs_parallel(x: np.ndarray, shape: tuple[int, int, int], full: bool, maxdim: int, pool, workers: int):
    """:func:`image_pairs` of one large image with its independent stages on ``pool``'s threads.

    The first pass of the sweeps is split into slabs of rows, then the two union-find passes run
    side by side; the first pass of the middle dimension is split into slabs once the clearing
    marks are ready; only the final reduction is sequential.
    """
    prepared = prepare(x, shape, full, maxdim)
    edge_marks = new_edge_marks(prepared.forward, shape, maxdim)
    ascents = new_ascents(prepared)
    rows = np.linspace(0, shape[0] * shape[1], 2 * workers + 1).astype(int)
    slabs = [pool.submit(first_pass, prepared, shape, full, ascents, edge_marks, int(a), int(b))
             for a, b in zip(rows[:-1], rows[1:])]
    parts = [slab.result() for slab in slabs]
    dim0 = pool.submit(saddle_pass, x, prepared, shape, full, False, ascents,
                       np.concatenate([part[0] for part in parts]), edge_marks)
    top = None
    if needs_top(shape, full, maxdim):
        top = pool.submit(saddle_pass, x, prepared, shape, full, True, ascents,
                          np.concatenate([part[1] for part in parts]), edge_marks)
    births1 = deaths1 = np.zeros(0, np.int64)
    if needs_middle(shape, maxdim):
        (top if full else dim0).result()  # the clearing marks
        planes = np.linspace(0, shape[0] + 2, 2 * workers + 1).astype(int)
        slabs = [pool.submit(middle_candidates, prepared, shape, full, edge_marks, int(a), int(b))
                 for a, b in zip(planes[:-1], planes[1:])]
        candidates = np.concatenate([slab.result() for slab in slabs])
        births1, deaths1 = middle_reduction(x, prepared, shape, full, candidates)
    births0, deaths0 = dim0.result()
    births_top, deaths_top = top.result() if top is not None else (np.zeros(0, np.int64),) * 2
    return assemble(prepared.essential, shape, maxdim, births0, deaths0, births1, deaths1, births_top, deaths_top)


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
    pool = thread_pool(workers)
    if n >= workers:
        # A few runs of images per thread: a thread that the system holds up leaves its share to the others.
        bounds = np.linspace(0, n, min(n, 4 * workers) + 1).astype(int)
        parts = list(pool.map(lambda a, b: images_pairs(flat, a, b, shape, full, maxdim), bounds[:-1], bounds[1:]))
    else:
        tables = [_image_pairs_parallel(image, shape, full, maxdim, pool, workers) for image in flat]
        parts = [(*table, np.array([len(table[0])])) for table in tables]
    return tuple(np.concatenate([part[i] for part in parts]) for i in range(4))
