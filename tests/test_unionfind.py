"""The compiled union-find engine: its sort, its neighbourhoods, its parallel path, larger volumes vs gudhi."""

from collections import Counter

import gudhi
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from monai_topo.ph import batch_persistence, cubical_persistence, unionfind
from monai_topo.ph.backends import cripser_pairs, unionfind_pairs

CONNECTIVITIES = ("full", "face")


def _gudhi_bars(x, connectivity, maxdim):
    """Finite positive-length bars of gudhi on -x, in super-level (birth, death) values."""
    kwargs = {"top_dimensional_cells" if connectivity == "full" else "vertices": -x}
    cc = gudhi.CubicalComplex(**kwargs)
    cc.compute_persistence(homology_coeff_field=2, min_persistence=-1)
    return Counter(
        (dim, round(-b, 9), round(-d, 9))
        for dim in range(maxdim + 1)
        for b, d in cc.persistence_intervals_in_dimension(dim)
        if np.isfinite(d) and b < d
    )


def _engine_bars(x, connectivity, maxdim, num_workers=1):
    """Bars straight from the engine; checks that every critical cell carries its bar's value."""
    dims, births, deaths, counts = unionfind.batch_pairs(x[None], maxdim, connectivity == "full", num_workers)
    flat = x.reshape(-1)
    assert counts.tolist() == [len(dims)]
    assert (dims[0], deaths[0]) == (0, -1) and flat[births[0]] == flat.max()  # the essential bar
    finite = deaths >= 0
    assert finite[1:].all() and (flat[births[finite]] > flat[deaths[finite]]).all()
    assert dims.max(initial=0) <= maxdim
    return Counter(
        (int(d), round(float(flat[b]), 9), round(float(flat[e]), 9)) for d, b, e in zip(dims[1:], births[1:], deaths[1:])
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_descending_order_is_a_stable_argsort(dtype):
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(3000), rng.choice([0.0, -0.0, 0.5, 1.0, 1e-30, 3e38], 3000)]).astype(dtype)
    rng.shuffle(values)
    expected = np.argsort(-values, kind="stable")
    order = unionfind.descending_order(values, np.zeros(0, np.int32))
    # -0.0 and 0.0 are equal values: any order between them refines the filtration.
    np.testing.assert_array_equal(values[order], values[expected])
    same_value_runs = np.split(order, np.flatnonzero(np.diff(values[order]) != 0) + 1)
    assert all((np.diff(run) > 0).all() or values[run[0]] == 0 for run in same_value_runs)


@pytest.mark.parametrize("corners", [True, False])
def test_cube_dilation_matches_scipy(corners):
    # The saddle test grows groups of neighbours inside the 3x3x3 cube with bit shifts.
    structure = ndimage.generate_binary_structure(3, 3 if corners else 1)
    rng = np.random.default_rng(1)
    for bits in rng.integers(0, 1 << 27, 500):
        cube = np.array([(bits >> b) & 1 for b in range(27)], bool).reshape(3, 3, 3)
        expected = ndimage.binary_dilation(cube, structure)
        got = unionfind._dilate(np.int64(bits), corners)
        assert np.array_equal(np.array([(got >> b) & 1 for b in range(27)], bool).reshape(3, 3, 3), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@pytest.mark.parametrize(
    "shape, levels",
    [((13, 12, 11), None), ((12, 11, 13), 5), ((3, 17, 23), None), ((1, 15, 16), 4), ((31, 29), None), ((40, 1), 3)],
)
def test_larger_images_match_gudhi(shape, levels, connectivity, dtype):
    # Bigger than the property tests: the middle dimension needs its reduction, not only apparent
    # pairs. float32 images without a middle dimension take the sort-free path (packed keys).
    rng = np.random.default_rng(sum(shape))
    x = (rng.random(shape) if levels is None else rng.integers(0, levels, shape) / (levels - 1)).astype(dtype)
    for maxdim in range(x.ndim):
        assert _engine_bars(x, connectivity, maxdim) == _gudhi_bars(x, connectivity, maxdim)


def _float32_images():
    side = st.integers(1, 9)
    shapes = st.one_of(st.tuples(side, side), st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)))
    levels = st.sampled_from([0.0, -0.0, 0.25, 0.5, 1.0])  # ties, plateaus, and a negative zero
    values = st.one_of(st.floats(0, 1, width=32), levels)
    return shapes.flatmap(lambda shape: arrays(np.float32, shape, elements=values))


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@given(x=_float32_images())
def test_float32_images_match_gudhi(x, connectivity):
    for maxdim in range(x.ndim):
        assert _engine_bars(x, connectivity, maxdim) == _gudhi_bars(x, connectivity, maxdim)


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@pytest.mark.parametrize("shape", [(9, 14, 12), (37, 41)])
def test_threads_inside_one_image_give_the_serial_table(shape, connectivity, monkeypatch):
    monkeypatch.setattr(unionfind, "_PARALLEL_IMAGE_SIZE", 0)
    x = np.random.default_rng(5).random(shape).astype(np.float32)[None]
    serial = unionfind.batch_pairs(x, len(shape) - 1, connectivity == "full", 1)
    parallel = unionfind.batch_pairs(x, len(shape) - 1, connectivity == "full", 2)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


def test_pair_table_adapter_agrees_with_cripser():
    f = -np.random.default_rng(6).random((6, 7, 5))
    for connectivity in CONNECTIVITIES:
        ours, theirs = unionfind_pairs(f, 2, connectivity), cripser_pairs(f, 2, connectivity)

        def bars(table):
            dims, births, deaths = table
            return Counter((d, f.flat[b], f.flat[e] if e >= 0 else None) for d, b, e in zip(dims, births, deaths)
                           if e < 0 or f.flat[b] != f.flat[e])

        assert bars(ours) == bars(theirs)


def test_batch_of_many_items_with_channels():
    x = torch.rand(5, 3, 24, 20, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    dgms = batch_persistence(x, backend="unionfind", num_workers=2)
    for b in range(5):
        for c in range(3):
            expected = _gudhi_bars(x[b, c].numpy(), "full", 1)
            got = dgms[b][c]
            finite = ~got.essential
            assert Counter(
                (int(d), round(float(u), 9), round(float(v), 9))
                for d, u, v in zip(got.dims[finite], got.births[finite], got.deaths[finite])
            ) == expected


def test_half_precision_input_keeps_values_and_gradient():
    x = torch.rand(12, 12, generator=torch.Generator().manual_seed(8)).to(torch.bfloat16).requires_grad_()
    dgm = cubical_persistence(x, backend="unionfind")
    assert dgm.births.dtype == torch.bfloat16
    assert torch.equal(dgm.births, x.detach().reshape(-1)[dgm.birth_index])
    dgm.lengths().sum().backward()
    assert x.grad.abs().sum() > 0


def test_too_large_image_names_the_way_out(monkeypatch):
    monkeypatch.setattr(unionfind, "MAX_VOXELS", 100)
    with pytest.raises(ValueError, match="too large.*cripser"):
        cubical_persistence(torch.rand(12, 12), backend="unionfind")


def test_forked_child_gets_its_own_threads():
    # A data-loader worker forked after the parent used the thread pool must not wait on dead threads.
    import multiprocessing

    x = np.random.default_rng(9).random((4, 12, 12)).astype(np.float32)
    expected = unionfind.batch_pairs(x, 1, True, 2)
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as child:
        got = child.apply_async(unionfind.batch_pairs, (x, 1, True, 2)).get(timeout=120)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
