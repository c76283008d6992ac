"""Betti matching error and clDice: against topolosses / scikit-image computed directly, known cases, handlers."""

import sys
import types

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from skimage.morphology import skeletonize

from monai_topo.handlers import BettiMatchingError, ClDice
from monai_topo.metrics import BettiMatchingErrorMetric, ClDiceMetric, compute_betti_matching_error, compute_cldice


def _masks(rng, shape, n):
    return [(rng.random(shape) > rng.uniform(0.3, 0.7)) for _ in range(n)]


@pytest.mark.parametrize("shape", [(8, 10), (16, 16), (5, 6, 7)])
def test_betti_matching_error_equals_topolosses(shape):
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
    try:
        from topolosses.losses.betti_matching.src import betti_matching as reference
    except ImportError as error:
        pytest.skip(f"topolosses not importable: {error}")
    rng = np.random.default_rng(sum(shape))
    for p, g in zip(_masks(rng, shape, 6), _masks(rng, shape, 6)):
        # Betti-Matching-3D filters by sub-level sets: 1 - mask
        result = reference.compute_matching(1.0 - p.astype(np.float64), 1.0 - g.astype(np.float64))
        expected = np.asarray(result.num_unmatched_input1) + np.asarray(result.num_unmatched_input2)
        got = compute_betti_matching_error(torch.from_numpy(p)[None, None], torch.from_numpy(g)[None, None],
                                           connectivity="face")[0, 0]
        np.testing.assert_array_equal(got[:-1].numpy(), expected)
        assert got[-1] == expected.sum()


def test_betti_matching_error_known_cases():
    ring = torch.zeros(1, 1, 9, 9)
    ring[..., 1:8, 1:7] = 1
    ring[..., 3:6, 2:5] = 0
    for connectivity in ("full", "face"):
        error = lambda a, b: compute_betti_matching_error(a, b, connectivity=connectivity)[0, 0].tolist()  # noqa: E731
        assert error(ring, ring) == [0, 0, 0]
        assert error(torch.roll(ring, 1, -1), ring) == [0, 0, 0]   # shifted: matched
        disc = ring.clone()
        disc[..., 3:6, 2:5] = 1
        assert error(disc, ring) == [0, 1, 1]
        two = ring.clone()
        two[..., 4, 1:7] = 0                                        # the ring cut into two arcs
        assert error(two, ring) == [1, 1, 2]
    metric = BettiMatchingErrorMetric(homology_dim=1)
    metric(disc, ring)
    metric(ring, ring)
    assert metric.aggregate().item() == 0.5


def _cldice_direct(p, g):
    sp, sg = skeletonize(p), skeletonize(g)
    tprec = (sp & g).sum() / sp.sum()
    tsens = (sg & p).sum() / sg.sum()
    return 2 * tprec * tsens / (tprec + tsens)


@pytest.mark.parametrize("shape", [(20, 24), (10, 12, 12)])
def test_cldice_equals_skimage_and_is_one_for_identical(shape):
    rng = np.random.default_rng(len(shape))
    from scipy.ndimage import binary_opening

    raw = [rng.random(shape) > 0.4 for _ in range(4)]
    noisy = [m ^ (rng.random(shape) > 0.9) for m in raw]  # the truth, with one voxel in ten flipped
    pairs = [(binary_opening(p), binary_opening(g)) for p, g in zip(noisy, raw)]
    pairs = [(p, g) for p, g in pairs if (skeletonize(p) & g).any() and (skeletonize(g) & p).any()]
    assert pairs
    for p, g in pairs:
        got = compute_cldice(torch.from_numpy(p)[None, None], torch.from_numpy(g)[None, None]).item()
        assert got == pytest.approx(_cldice_direct(p, g), abs=1e-6)
        assert compute_cldice(torch.from_numpy(p)[None, None], torch.from_numpy(p)[None, None]).item() == 1.0
    empty = torch.zeros(1, 1, *shape)
    assert compute_cldice(empty, empty).item() == 1.0
    with pytest.raises(ValueError, match="binarised"):
        ClDiceMetric()(empty + 0.5, empty)


def test_handlers():
    ring = torch.zeros(1, 1, 9, 9)
    ring[..., 1:8, 1:7] = 1
    ring[..., 3:6, 2:5] = 0
    disc = ring.clone()
    disc[..., 3:6, 2:5] = 1
    engine = Engine(lambda engine, batch: (batch, ring))
    BettiMatchingError().attach(engine, "bm")
    ClDice().attach(engine, "cldice")
    state = engine.run([ring, disc])
    assert state.metrics["bm"] == 0.5
    expected = (1 + _cldice_direct(disc[0, 0].bool().numpy(), ring[0, 0].bool().numpy())) / 2
    assert state.metrics["cldice"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("bundle", ["cardiac_myocardium_topo", "placenta_topo"])
def test_bundles_evaluate_reports_the_new_metrics(bundle):
    from pathlib import Path

    from monai.bundle import ConfigParser

    configs = Path(__file__).resolve().parents[1] / "bundles" / bundle / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "inference.json"), str(configs / "evaluate.json")])
    metrics = parser.get_parsed_content("additional_metrics")
    assert isinstance(metrics["betti_matching_error"], BettiMatchingError)
    assert isinstance(metrics["cldice"], ClDice)
    dims = 2 if bundle == "cardiac_myocardium_topo" else 3  # the error in each homology dimension
    for k in range(dims):
        assert metrics[f"betti_matching_error_dim{k}"].metric_fn.homology_dim == k
    assert f"betti_matching_error_dim{dims}" not in metrics
