"""Persistent homology core: agreement with gudhi and cripser, known shapes, gradients, errors."""

from collections import Counter

import cripser
import gudhi
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from monai_topo.ph import batch_persistence, betti_numbers, cubical_persistence
from monai_topo.ph.downsample import downsampled_persistence, pool
from shapes import KNOWN_SHAPES

CONNECTIVITIES = ("full", "face")
BACKENDS = ("gudhi", "cripser", "unionfind", "auto")


def _bars(table):
    """Multiset of finite bars of positive length, rounded so float noise cannot split equal values."""
    return Counter((int(d), round(float(b), 9), round(float(e), 9)) for d, b, e in table if b > e)


def _ours(x, connectivity, backend):
    dgm = cubical_persistence(torch.from_numpy(x), connectivity=connectivity, backend=backend)
    finite = ~dgm.essential
    return _bars(dgm.to_numpy()[finite.numpy()])


def _gudhi_reference(x, connectivity):
    """gudhi on -x, intervals read back as super-level (birth, death) values."""
    kwargs = {"top_dimensional_cells" if connectivity == "full" else "vertices": -x}
    cc = gudhi.CubicalComplex(**kwargs)
    cc.compute_persistence(homology_coeff_field=2, min_persistence=-1)
    rows = []
    for dim in range(x.ndim):
        for b, d in cc.persistence_intervals_in_dimension(dim):
            if np.isfinite(d):
                rows.append((dim, -b, -d))
    return _bars(rows)


def _cripser_reference(x, connectivity):
    table = cripser.compute_ph(-x, filtration="T" if connectivity == "full" else "V", maxdim=x.ndim - 1)
    return _bars((d, -b, -e) for d, b, e in table[:, :3] if np.isfinite(e))


def _probability_arrays(ndim):
    side = st.integers(2, 9 if ndim == 2 else 5)
    shapes = st.tuples(*[side] * ndim)
    continuous = st.floats(0, 1, allow_nan=False, width=64)
    quantised = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])  # ties and plateaus
    return st.one_of(
        shapes.flatmap(lambda s: arrays(np.float64, s, elements=continuous)),
        shapes.flatmap(lambda s: arrays(np.float64, s, elements=quantised)),
    )


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@given(x=st.one_of(_probability_arrays(2), _probability_arrays(3)))
def test_bars_match_gudhi_and_cripser(x, connectivity):
    expected = _gudhi_reference(x, connectivity)
    assert _cripser_reference(x, connectivity) == expected  # the two libraries agree with each other
    for backend in BACKENDS:
        assert _ours(x, connectivity, backend) == expected, backend


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@given(x=st.one_of(_probability_arrays(2), _probability_arrays(3)))
def test_betti_at_half_matches_mask(x, connectivity):
    dgm = cubical_persistence(torch.from_numpy(x), connectivity=connectivity)
    assert dgm.betti(0.5) == betti_numbers(x >= 0.5, connectivity)


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@pytest.mark.parametrize("name", list(KNOWN_SHAPES))
def test_known_shapes(name, connectivity):
    make, expected = KNOWN_SHAPES[name]
    mask = make()
    assert betti_numbers(mask, connectivity) == expected
    assert betti_numbers(torch.from_numpy(mask), connectivity) == expected
    for backend in ("gudhi", "cripser", "unionfind"):
        dgm = cubical_persistence(torch.from_numpy(mask.astype(np.float32)), connectivity=connectivity, backend=backend)
        assert dgm.betti(0.5) == expected


def test_corner_touching_pixels():
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = mask[2, 2] = True
    assert betti_numbers(mask, "full") == (1, 0)
    assert betti_numbers(mask, "face") == (2, 0)
    x = torch.from_numpy(mask.astype(np.float32))
    assert cubical_persistence(x, connectivity="full").betti() == (1, 0)
    assert cubical_persistence(x, connectivity="face").betti() == (2, 0)


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@given(mask=st.tuples(st.integers(2, 12), st.integers(2, 12), st.integers(1, 6)).flatmap(
    lambda s: arrays(bool, s, elements=st.booleans())))
def test_beta0_matches_scipy_label(mask, connectivity):
    full = connectivity == "full"
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim if full else 1)
    assert betti_numbers(mask, connectivity)[0] == ndimage.label(mask, structure)[1]
    flat = mask[..., 0]
    structure2 = ndimage.generate_binary_structure(2, 2 if full else 1)
    assert betti_numbers(flat, connectivity)[0] == ndimage.label(flat, structure2)[1]


def _euler_from_cells(mask, connectivity):
    """χ = V − E + F − C counted on the cubical complex each connectivity builds."""
    m = np.pad(mask, 1).astype(bool)
    if connectivity == "face":
        # V-construction: voxels are vertices; a cell is present when all its corner voxels are.
        counts = []
        for k in range(4):
            total = 0
            for axes in __import__("itertools").combinations(range(3), k):
                cell = m.copy()
                for ax in axes:
                    cell = cell[tuple(slice(0, -1) if a == ax else slice(None) for a in range(3))] & \
                        cell[tuple(slice(1, None) if a == ax else slice(None) for a in range(3))]
                total += int(cell.sum())
            counts.append(total)
    else:
        # T-construction: union of closed unit cubes; a cell is present when any cube around it is.
        counts = []
        for k in range(4):
            total = 0
            for axes in __import__("itertools").combinations(range(3), k):
                free = [a for a in range(3) if a not in axes]  # directions the cell is thin in
                cell = m.copy()
                for ax in free:
                    cell = cell[tuple(slice(0, -1) if a == ax else slice(None) for a in range(3))] | \
                        cell[tuple(slice(1, None) if a == ax else slice(None) for a in range(3))]
                total += int(cell.sum())
            counts.append(total)
    return counts[0] - counts[1] + counts[2] - counts[3]


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@given(x=_probability_arrays(3))
def test_euler_characteristic_3d(x, connectivity):
    mask = x >= 0.5
    chi = _euler_from_cells(mask, connectivity)
    b0, b1, b2 = betti_numbers(mask, connectivity)
    assert b0 - b1 + b2 == chi
    p0, p1, p2 = cubical_persistence(torch.from_numpy(x), connectivity=connectivity).betti(0.5)
    assert p0 - p1 + p2 == chi


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@pytest.mark.parametrize("shape", [(6, 7), (4, 4, 5)])
def test_gradient_matches_finite_differences(shape, connectivity):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, dtype=torch.float64, generator=gen).requires_grad_()
    weights = torch.rand(64, dtype=torch.float64, generator=gen)

    def f(values):
        dgm = cubical_persistence(values, connectivity=connectivity)
        lengths = torch.sort(dgm.lengths(), descending=True).values
        return (weights[: len(lengths)] * lengths**2).sum() + dgm.births.sum() - 0.5 * dgm.deaths.sum()

    assert torch.autograd.gradcheck(f, (x,), eps=1e-7, atol=1e-5)

    f(x).backward()
    dgm = cubical_persistence(x, connectivity=connectivity)
    critical = torch.zeros(x.numel(), dtype=torch.bool)
    critical[dgm.birth_index] = True
    critical[dgm.death_index[~dgm.essential]] = True
    assert (x.grad.reshape(-1)[~critical] == 0).all()
    assert (x.grad.reshape(-1)[critical] != 0).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gradient_returns_to_device():
    x = torch.rand(2, 1, 16, 16, device="cuda", requires_grad=True)
    dgm = batch_persistence(x)[1][0]
    assert dgm.births.device.type == "cuda"
    dgm.lengths().sum().backward()
    assert x.grad.device.type == "cuda" and x.grad[1].abs().sum() > 0 and x.grad[0].abs().sum() == 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(3, 2, 20, 17), (2, 1, 6, 7, 8)])
def test_batch_equals_serial(shape, backend):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    parallel = batch_persistence(x, backend=backend, num_workers=2)
    for b in range(shape[0]):
        for c in range(shape[1]):
            single = cubical_persistence(x[b, c], backend=backend)
            for field in ("dims", "births", "deaths", "birth_index", "death_index", "essential"):
                assert torch.equal(getattr(parallel[b][c], field), getattr(single, field))


def test_batch_gradient_reaches_each_item():
    x = torch.rand(3, 1, 10, 10, generator=torch.Generator().manual_seed(2), requires_grad=True)
    dgms = batch_persistence(x)
    dgms[2][0].lengths().sum().backward()
    assert x.grad[:2].abs().sum() == 0 and x.grad[2].abs().sum() > 0


def test_constant_image_gives_only_essential_component():
    for shape in [(8, 8), (4, 5, 6)]:
        dgm = cubical_persistence(torch.full(shape, 0.3, requires_grad=True))
        assert len(dgm) == 1 and bool(dgm.essential[0]) and int(dgm.dims[0]) == 0
        assert float(dgm.births[0]) == pytest.approx(0.3) and float(dgm.deaths[0]) == 0


def test_diagram_invariants():
    x = torch.rand(30, 30, generator=torch.Generator().manual_seed(3))
    dgm = cubical_persistence(x)
    assert (dgm.births >= dgm.deaths).all()
    assert torch.equal(dgm.births, x.reshape(-1)[dgm.birth_index])
    assert int(dgm.essential.sum()) == 1
    assert torch.equal(dgm.in_dim(1).dims, dgm.dims[dgm.dims == 1])
    assert cubical_persistence(x, maxdim=0).dims.max() == 0


@pytest.mark.parametrize(
    "x, kwargs, error, match",
    [
        (torch.tensor([0.0, 1.0, float("nan"), 0.5]).reshape(2, 2), {}, ValueError, "NaN or Inf"),
        (torch.tensor([[0.0, float("inf")], [0.0, 0.0]]), {}, ValueError, "NaN or Inf"),
        (torch.rand(5), {}, ValueError, "spatial dimensions"),
        (torch.rand(2, 2, 2, 2), {}, ValueError, "spatial dimensions"),
        (torch.rand(0, 4), {}, ValueError, "empty"),
        (torch.ones(4, 4, dtype=torch.int64), {}, TypeError, "floating-point"),
        (torch.rand(4, 4) - 2, {}, ValueError, "probabilities"),
        (torch.rand(4, 4), {"connectivity": "diagonal"}, ValueError, "connectivity"),
        (torch.rand(4, 4), {"backend": "ripser"}, ValueError, "backend"),
        (torch.rand(4, 4), {"maxdim": 2}, ValueError, "maxdim"),
        ([[0.1, 0.2]], {}, TypeError, "torch.Tensor"),
    ],
)
def test_bad_input(x, kwargs, error, match):
    with pytest.raises(error, match=match):
        cubical_persistence(x, **kwargs)


def test_bad_batch_and_mask_input():
    with pytest.raises(ValueError, match="B, C"):
        batch_persistence(torch.rand(4, 4))
    with pytest.raises(ValueError, match="num_workers"):
        batch_persistence(torch.rand(1, 1, 4, 4), num_workers=0)
    with pytest.raises(ValueError, match="binary"):
        betti_numbers(np.full((3, 3), 0.4))
    with pytest.raises(ValueError, match="mask must be 2D"):
        betti_numbers(np.zeros(3, bool))
    with pytest.raises(ValueError, match="connectivity"):
        betti_numbers(np.zeros((3, 3), bool), connectivity="corner")


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_downsampled_persistence_pools_then_matches_batch_persistence(mode):
    x = torch.rand(2, 1, 13, 10, generator=torch.Generator().manual_seed(4), requires_grad=True)
    pooled = pool(x, 2, mode)
    assert pooled.shape == (2, 1, 7, 5)
    dgms, reference = downsampled_persistence(x, 2, mode), batch_persistence(pooled)
    for got, expected in zip(dgms, reference):
        assert torch.equal(got[0].births, expected[0].births) and got[0].spatial_shape == (7, 5)
    # Gradients reach the full-resolution map through the pooling, and only the second item.
    dgms[1][0].lengths().sum().backward()
    assert x.grad[0].abs().sum() == 0 and x.grad[1].abs().sum() > 0
    if mode == "max":  # only window winners get a gradient
        assert int((x.grad[1] != 0).sum()) <= 2 * len(dgms[1][0])


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_downsampling_keeps_the_topology_of_thick_shapes(mode):
    for name in ("ring", "two_rings", "shell", "solid_torus"):
        make, expected = KNOWN_SHAPES[name]
        mask = torch.from_numpy(np.kron(make(), np.ones((2,) * make().ndim)).astype(np.float32))
        assert downsampled_persistence(mask[None, None], 2, mode)[0][0].betti(0.5) == expected, name
    x = torch.rand(1, 1, 6, 6)
    assert downsampled_persistence(x, 1)[0][0].births.equal(batch_persistence(x)[0][0].births)


def test_downsampling_rejects_bad_arguments():
    with pytest.raises(ValueError, match="factor"):
        pool(torch.rand(1, 1, 4, 4), 0)
    with pytest.raises(ValueError, match="mode"):
        pool(torch.rand(1, 1, 4, 4), 2, "median")
    with pytest.raises(ValueError, match="B, C"):
        pool(torch.rand(4, 4), 2)
