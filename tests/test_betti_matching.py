"""Betti matching: against topolosses (Betti-Matching-3D), a brute-force induced matching, known cases, gradients."""

import functools
import itertools
import sys
import types

import numpy as np
import pytest
import torch

from monai_topo.losses import BettiMatchingLoss, betti_matching_loss
from monai_topo.ph.induced_matching import betti_matching


def _topolosses_loss():
    """topolosses' BettiMatchingLoss class, with the empty torchvision stand-in its import needs."""
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
    try:
        from topolosses.losses import BettiMatchingLoss as TheirLoss
    except ImportError as error:  # not installed, or its compiled extension does not load here
        pytest.skip(f"topolosses not importable: {error}")
    return TheirLoss


def _random_pair(rng, shape, levels):
    """A prediction and a target with ties and plateaus: values on a grid of ``levels`` steps."""
    p = np.round(rng.random(shape) * levels) / levels
    g = (rng.random(shape) > 0.5).astype(float) if rng.random() < 0.3 else np.round(rng.random(shape) * levels) / levels
    return p.astype(np.float32), g.astype(np.float32)


@pytest.mark.parametrize("shape", [(7, 9), (12, 12), (4, 5, 6)])
def test_equals_topolosses(shape):
    TheirLoss = _topolosses_loss()
    theirs = TheirLoss(use_base_loss=False, alpha=1.0, include_background=True)
    ours = BettiMatchingLoss(connectivity="face")
    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    for trial in range(12):
        p, g = _random_pair(rng, (3, 1, *shape), (2, 4, 16, 255)[trial % 4])
        p, g = torch.from_numpy(p), torch.from_numpy(g)
        assert ours(p, g).item() == pytest.approx(theirs(p, g).item(), abs=1e-5)


# --- brute force: every pairing by dense Z/2 column reduction, from the definitions -------------


def _complex(x, full):
    """Cells of the V- (face) or T- (full) construction of ``x``: Khalimsky coords, dim, value, tie key."""
    ndim = x.ndim
    kshape = [2 * n + 1 if full else 2 * n - 1 for n in x.shape]
    cells = {}
    for c in itertools.product(*map(range, kshape)):
        if full:  # voxels are the top cells, at odd coordinates; a cell's value: max of the voxels around
            ranges = [[(ci - 1) // 2] if ci % 2 else [ci // 2 - 1, ci // 2] for ci in c]
            voxels = [v for v in itertools.product(*ranges) if all(0 <= vi < n for vi, n in zip(v, x.shape))]
            value = max(x[v] for v in voxels)
            tie = np.ravel_multi_index(c, kshape)
        else:  # voxels are the vertices, at even coordinates; a cell's value: min of its voxels
            ranges = [[ci // 2] if ci % 2 == 0 else [(ci - 1) // 2, (ci + 1) // 2] for ci in c]
            value = min(x[v] for v in itertools.product(*ranges))
            odd = [a for a in range(ndim) if c[a] % 2]
            kind = odd[0] if len(odd) == 1 else ([a for a in range(ndim) if c[a] % 2 == 0] or [0])[0]
            tie = np.ravel_multi_index(tuple(ci // 2 for ci in c), x.shape) * 3 + kind
        cells[c] = (sum(ci % 2 for ci in c), value, tie)
    return cells


def _boundary(c):
    out = []
    for a, ca in enumerate(c):
        if ca % 2:
            for step in (-1, 1):
                out.append(c[:a] + (ca + step,) + c[a + 1:])
    return out


def _reduce(rows, columns):
    """Pivot pairs of the boundary matrix with rows and columns in the given orders (lists of cells)."""
    row_rank = {r: i for i, r in enumerate(rows)}
    owner, pairs = {}, []
    for s in columns:
        column = set(row_rank[f] for f in _boundary(s))
        while column and max(column) in owner:
            column ^= owner[max(column)]
        if column:
            owner[max(column)] = column
            pairs.append((rows[max(column)], s))
    return pairs


def _brute_force_loss(p, g, full):
    c = np.maximum(p, g)
    complexes = [_complex(a, full) for a in (p, g, c)]
    total = 0.0
    for dim in range(p.ndim):
        def order(k, cx):
            return sorted((cell for cell, (d, _, _) in cx.items() if d == k), key=lambda cell: (-cx[cell][1], cx[cell][2]))

        own = [_reduce(order(dim, cx), order(dim + 1, cx)) for cx in complexes]
        image = [_reduce(order(dim, complexes[i]), order(dim + 1, complexes[2])) for i in range(2)]
        bars = [{b: (b, d) for b, d in own[i] if complexes[i][b][1] != complexes[i][d][1]} for i in range(2)]
        image_birth = [{d: b for b, d in image[i]} for i in range(2)]
        matched = []
        for b, d in own[2]:
            if complexes[2][b][1] == complexes[2][d][1]:
                continue
            ends = [image_birth[i].get(d) for i in range(2)]
            if all(e is not None and e in bars[i] for i, e in enumerate(ends)):
                matched.append((bars[0].pop(ends[0]), bars[1].pop(ends[1])))
        value = lambda i, cell: complexes[i][cell][1]  # noqa: E731
        for (bp, dp), (bg, dg) in matched:
            total += 2 * ((value(0, bp) - value(1, bg)) ** 2 + (value(0, dp) - value(1, dg)) ** 2)
        for i in range(2):
            total += sum((value(i, b) - value(i, d)) ** 2 for b, d in bars[i].values())
    return total


@pytest.mark.parametrize("connectivity", ["face", "full"])
@pytest.mark.parametrize("shape", [(4, 5), (6, 6), (3, 3, 4)])
def test_equals_brute_force(shape, connectivity):
    rng = np.random.default_rng(7 + len(shape))
    for trial in range(4):
        p, g = _random_pair(rng, shape, (3, 8, 1000, 5)[trial])
        expected = _brute_force_loss(p.astype(np.float64), g.astype(np.float64), connectivity == "full")
        got = betti_matching_loss(torch.from_numpy(p).double(), torch.from_numpy(g).double(), connectivity).item()
        assert got == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("connectivity", ["face", "full"])
@pytest.mark.parametrize("shape", [(5, 7), (1, 6), (6, 1), (3, 4, 5), (1, 1, 4), (2, 1, 3), (2, 2, 2)])
def test_cell_values_in_layout_order_are_the_minimum_or_maximum_over_their_voxels(connectivity, shape):
    """Each kind's values (read straight off the voxels for the V-construction, off the Khalimsky
    grid for the T-construction) are those of the cells, in the Layout's order, built here from
    the definition."""
    from monai_topo.ph.induced_matching import _side_values, layout

    full = connectivity == "full"
    x = np.random.default_rng(3).random(shape).astype(np.float32)
    complex_ = _complex(x, full)
    kshape = tuple(2 * n + 1 if full else 2 * n - 1 for n in shape)
    cells = layout(kshape, full)
    side = _side_values(cells, x, full)
    for kind in ("vertex", "edge", "facet", "top"):
        expected = [complex_[c][1] for c in zip(*np.unravel_index(cells.of(kind), kshape))]
        np.testing.assert_array_equal(side[kind], np.array(expected, np.float32), err_msg=kind)


@pytest.mark.parametrize("connectivity", ["face", "full"])
def test_dimension_1_reductions_by_cohomology_and_homology_equal_a_dense_reduction(connectivity):
    """Both reductions of a volume's squares give the pivot pairs of the dense boundary matrix with
    its rows (edges) in one map's order and its columns (squares) in another's: the anti-transpose
    has the same pairs, and the clearings (merging edges, cavity-creating squares: their columns
    cleared in one, their rows dropped in the other) drop no pair."""
    from monai_topo.ph.induced_matching import layout, reduce_by_cohomology, reduce_by_homology

    full = connectivity == "full"
    rng = np.random.default_rng(11)
    for levels in (1, 2, 5):  # 1: masks, all plateaus
        maps = _random_pair(rng, (3, 4, 4), levels)
        complexes = [_complex(a.astype(np.float64), full) for a in maps]
        kshape = tuple(2 * n + 1 if full else 2 * n - 1 for n in maps[0].shape)
        cells = layout(kshape, full)
        position = {}
        for kind in (cells.edges, cells.facets):
            position.update({c: i for i, c in enumerate(zip(*np.unravel_index(kind, kshape)))})

        def order(k, cx):
            return sorted((cell for cell, (d, _, _) in cx.items() if d == k), key=lambda cell: (-cx[cell][1], cx[cell][2]))

        def as_rank(order_):
            rank = np.empty(len(order_), np.int32)
            rank[[position[c] for c in order_]] = np.arange(len(order_))
            return rank

        for rows_cx, columns_cx in itertools.product(complexes, repeat=2):
            rows, columns = order(1, rows_cx), order(2, columns_cx)
            expected = {(position[e], position[f]) for e, f in _reduce(rows, columns)}
            merged = np.zeros(cells.edges.size, bool)  # edges with a non-zero column in dimension 0
            merged[[position[e] for _, e in _reduce(order(0, rows_cx), rows)]] = True
            created = np.ones(cells.facets.size, bool)  # squares whose boundary reduces to zero
            created[[position[f] for _, f in _reduce(rows, columns)]] = False
            row_rank, column_rank = as_rank(rows), as_rank(columns)
            for reduce in (reduce_by_cohomology, reduce_by_homology):
                reduction = reduce(cells, row_rank, column_rank, merged, created)
                assert set(zip(*(a.tolist() for a in reduction.pairs()))) == expected
                squares = rng.permutation(cells.facets.size)[:5]  # an image is read at some squares
                killed = {f: e for e, f in expected}
                assert reduction.edges_killed_at(squares).tolist() == [killed.get(f, -1) for f in squares]
                if rows_cx is columns_cx:  # a map's own bars: the positive-length pairs only
                    values = [np.array([rows_cx[c][1] for c in zip(*np.unravel_index(kind, kshape))])
                              for kind in (cells.edges, cells.facets)]
                    assert set(zip(*(a.tolist() for a in reduction.pairs(values)))) == {
                        (e, f) for e, f in expected if values[0][e] != values[1][f]}


# --- known cases --------------------------------------------------------------------------------


def _ring():
    ring = torch.zeros(9, 9)
    ring[1:8, 1:7] = 1
    ring[3:6, 2:5] = 0
    return ring


@pytest.mark.parametrize("connectivity", ["face", "full"])
def test_known_cases(connectivity):
    ring = _ring()
    disc = (ring > 0).float()
    disc[3:6, 2:5] = 1
    # the ring's hole (1, 0) has no partner in the disc: it goes to the diagonal, (1 - 0)^2
    assert betti_matching_loss(ring, disc, connectivity).item() == pytest.approx(1.0)
    # the holes overlap, so they are matched: 2 * ((0.8 - 1)^2 + (0 - 0)^2); components alike
    shifted = torch.roll(ring, 1, dims=1) * 0.8
    assert betti_matching_loss(shifted, ring, connectivity).item() == pytest.approx(0.08)
    two = torch.zeros(9, 9)
    two[1:4, 1:4] = 0.9
    two[5:8, 5:8] = 0.6
    one = torch.zeros(9, 9)
    one[1:4, 1:4] = 1
    # the smaller blob (0.6, 0) is unmatched; the other is the essential component, left out
    assert betti_matching_loss(two, one, connectivity).item() == pytest.approx(0.36)


def test_identical_inputs_give_zero():
    rng = np.random.default_rng(3)
    for shape in [(2, 2, 16, 16), (1, 1, 6, 7, 8)]:
        x = torch.from_numpy(np.round(rng.random(shape) * 6) / 6).float()
        for connectivity in ("face", "full"):
            assert BettiMatchingLoss(connectivity=connectivity)(x, x).item() == 0.0


# --- gradients ----------------------------------------------------------------------------------


@pytest.mark.parametrize("connectivity", ["face", "full"])
@pytest.mark.parametrize("shape", [(6, 7), (3, 4, 4)])
def test_gradient_at_critical_voxels_and_finite_differences(shape, connectivity):
    rng = np.random.default_rng(11)
    p = rng.random(shape)
    g = (rng.random(shape) > 0.5).astype(float)
    x = torch.from_numpy(p).requires_grad_()
    target = torch.from_numpy(g)
    betti_matching_loss(x, target, connectivity).backward()
    m = betti_matching(p, g, connectivity)
    critical = set(np.concatenate([a[:, :2].ravel() for a in m.matched] + [a.ravel() for a in m.unmatched_prediction]))
    nonzero = set(np.flatnonzero(x.grad.numpy().ravel()))
    assert nonzero <= critical and nonzero
    eps = 1e-6
    numeric = np.empty(p.size)
    for i in range(p.size):
        up, down = p.copy().ravel(), p.copy().ravel()
        up[i] += eps
        down[i] -= eps
        f = lambda v: betti_matching_loss(torch.from_numpy(v.reshape(shape)), target, connectivity).item()  # noqa: E731
        numeric[i] = (f(up) - f(down)) / (2 * eps)
    np.testing.assert_allclose(x.grad.numpy().ravel(), numeric, atol=1e-5)


# --- MONAI arguments ----------------------------------------------------------------------------


def test_monai_arguments():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 12, 12)
    labels = torch.randint(0, 3, (2, 1, 12, 12))
    onehot = torch.nn.functional.one_hot(labels[:, 0], 3).permute(0, 3, 1, 2).float()
    per_item = BettiMatchingLoss(softmax=True, to_onehot_y=True, reduction="none")(logits, labels)
    assert per_item.shape == (2, 3, 1, 1)
    probs = torch.softmax(logits, 1)
    expected = torch.tensor([[betti_matching_loss(probs[b, c], onehot[b, c]).item() for c in range(3)] for b in range(2)])
    torch.testing.assert_close(per_item[..., 0, 0], expected)
    no_background = BettiMatchingLoss(softmax=True, include_background=False, reduction="sum")(logits, onehot)
    assert no_background.item() == pytest.approx(expected[:, 1:].sum().item(), rel=1e-6)
    with pytest.raises(ValueError, match="connectivity"):
        BettiMatchingLoss(connectivity="diagonal")
    with pytest.raises(ValueError, match="target shape"):
        BettiMatchingLoss()(probs, onehot[:, :2])


@pytest.mark.parametrize("connectivity", ["face", "full"])
@pytest.mark.parametrize("shape", [(12, 13), (6, 7, 8)])
def test_bars_of_a_mask_are_its_betti_numbers(shape, connectivity):
    """Against an empty target every bar of a mask is unmatched: with the essential component left
    out, they count its Betti numbers in the package's connectivity convention."""
    from monai_topo.ph import betti_numbers

    rng = np.random.default_rng(5)
    for _ in range(3):
        mask = rng.random(shape) > 0.55
        m = betti_matching(mask.astype(np.float32), np.zeros(shape, np.float32), connectivity)
        counts = [len(u) for u in m.unmatched_prediction]
        counts[0] += int(mask.any())
        assert tuple(counts) == tuple(betti_numbers(mask, connectivity))
        assert all(len(a) == 0 for a in m.matched)


@pytest.mark.parametrize("connectivity", ["face", "full"])
@pytest.mark.parametrize("shape", [(17, 19), (6, 9, 8)])
def test_stages_on_threads_equal_sequential(shape, connectivity):
    """The task graph run on a pool gives the matching of the sequential run, table for table."""
    from monai_topo.ph.host import thread_pool

    rng = np.random.default_rng(13)
    for levels in (1, 3, 255):
        p, g = _random_pair(rng, shape, levels)
        alone = betti_matching(p, g, connectivity)
        threaded = betti_matching(p, g, connectivity, pool=thread_pool(2))
        for kind in ("matched", "unmatched_prediction", "unmatched_target"):
            for a, b in zip(getattr(alone, kind), getattr(threaded, kind)):
                np.testing.assert_array_equal(a, b)


def test_run_tasks_order_and_errors():
    from monai_topo.ph.host import thread_pool
    from monai_topo.ph.induced_matching import run_tasks

    for pool in (None, thread_pool(2)):
        log = []
        tasks = {name: (functools.partial(log.append, name), after) for name, after in
                 (("c", ("a", "b")), ("a", ()), ("b", ("a",)))}
        run_tasks(tasks, pool)
        assert log == ["a", "b", "c"]
        with pytest.raises(ValueError, match="wait for tasks that are not given"):
            run_tasks({"a": (lambda: None, ("missing",))}, pool)
        with pytest.raises(ZeroDivisionError):
            run_tasks({"a": (lambda: 1 / 0, ())}, pool)


def test_orders_of_a_mask_and_of_the_comparison_image_are_stable_sorts():
    """The partition of a mask and the merge of a raised map into its lower map's order equal a
    stable descending sort (ties by index), raised cells few (merged) or many (sorted)."""
    from monai_topo.ph.induced_matching import order_above, two_valued_order

    def stable_descending(values):
        return np.argsort(-values.astype(np.float64), kind="stable")

    rng = np.random.default_rng(21)
    for trial in range(20):
        n = int(rng.integers(1, 400))
        mask = (rng.random(n) < rng.random()).astype(np.float32) * rng.choice([1.0, 0.5])
        np.testing.assert_array_equal(two_valued_order(mask), stable_descending(mask))
        lower = (np.round(rng.random(n) * (2, 5, 255)[trial % 3]) / (2, 5, 255)[trial % 3]).astype(np.float32)
        raised = lower.copy()
        at_top = rng.random(n) < 0.3
        raised[at_top] = 1.0  # a mask's foreground
        below_top = rng.random(n) < (0.05 if trial % 2 else 0.6)  # a few raised below the top (merged) or many (sorted)
        raised[below_top] = np.maximum(lower[below_top], np.round(rng.random(below_top.sum()) * 4) / 4)
        order = order_above(raised, lower, stable_descending(lower).astype(np.int32))
        np.testing.assert_array_equal(order, stable_descending(raised))
