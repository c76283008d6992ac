"""Topology metrics: Betti error, topological correctness, variation of information."""

import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric
from scipy.stats import entropy
from shapes import KNOWN_SHAPES, ring

from monai_topo.metrics import (
    BettiErrorMetric,
    TopologicalCorrectnessMetric,
    VariationOfInformationMetric,
    compute_betti_error,
    compute_topological_correctness,
    compute_variation_of_information,
)
from monai_topo.ph import CONNECTIVITIES

SHAPES_2D = [name for name, (_, betti) in KNOWN_SHAPES.items() if len(betti) == 2]
SHAPES_3D = [name for name, (_, betti) in KNOWN_SHAPES.items() if len(betti) == 3]
REDUCTIONS = ["mean", "sum", "mean_batch", "sum_batch", "mean_channel", "sum_channel", "none"]


def _batch(names, size=None):
    """The named shapes, zero-padded to a common size, as a (B, 1, *spatial) float batch."""
    masks = [KNOWN_SHAPES[name][0]() for name in names]
    size = np.max([m.shape for m in masks], axis=0) if size is None else size
    batch = np.zeros((len(masks), 1, *size), np.float32)
    for b, m in enumerate(masks):
        batch[(b, 0, *[slice(0, n) for n in m.shape])] = m
    return torch.from_numpy(batch)


def _betti(name):
    return KNOWN_SHAPES[name][1]


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@pytest.mark.parametrize("names", [SHAPES_2D, SHAPES_3D], ids=["2d", "3d"])
def test_betti_error_on_known_shapes(names, connectivity):
    pred = _batch(names)
    truth = pred.roll(1, dims=0)  # each shape against the next one in the list
    errors = compute_betti_error(pred, truth, connectivity=connectivity)
    expected = np.abs(np.array([_betti(n) for n in names]) - np.array([_betti(n) for n in np.roll(names, 1)]))
    assert errors.shape == (len(names), 1, len(expected[0]) + 1)
    np.testing.assert_array_equal(errors[:, 0, :-1].numpy(), expected)
    np.testing.assert_array_equal(errors[:, 0, -1].numpy(), expected.sum(1))
    assert compute_betti_error(pred, pred, connectivity=connectivity).sum() == 0


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@pytest.mark.parametrize("names", [SHAPES_2D, SHAPES_3D], ids=["2d", "3d"])
def test_prior_mode_equals_truth_mode(names, connectivity):
    pred = _batch(names)
    for truth_name in names:
        truth = _batch([truth_name] * len(names), size=pred.shape[2:])
        by_truth = compute_betti_error(pred, truth, connectivity=connectivity)
        by_prior = compute_betti_error(pred, prior=[_betti(truth_name)] * len(names), connectivity=connectivity)
        torch.testing.assert_close(by_truth, by_prior)
        metric = BettiErrorMetric(prior=_betti(truth_name), connectivity=connectivity, reduction="none")
        torch.testing.assert_close(metric(pred), by_prior[..., -1])


@pytest.mark.parametrize("ndim", [2, 3])
def test_connectivity_decides_diagonal_contacts(ndim):
    corner_pair = torch.zeros(1, 1, *[4] * ndim)
    corner_pair[(0, 0, *[1] * ndim)] = 1
    corner_pair[(0, 0, *[2] * ndim)] = 1  # touching at a corner only
    one_component = (1,) + (0,) * (ndim - 1)
    assert compute_betti_error(corner_pair, prior=[one_component], connectivity="full")[0, 0, -1] == 0
    assert compute_betti_error(corner_pair, prior=[one_component], connectivity="face")[0, 0, -1] == 1


def test_prior_ranges_give_distance_to_range():
    pred = _batch(["ring", "figure_eight", "two_rings"])  # (1, 1), (1, 2), (2, 2)
    errors = compute_betti_error(pred, prior=[(1, (0, 2))] * 3)[:, 0]
    np.testing.assert_array_equal(errors.numpy(), [[0, 0, 0], [0, 0, 0], [1, 0, 1]])
    errors = compute_betti_error(pred, prior=torch.tensor([[[0, 1], [3, 5]]] * 3))[:, 0]
    np.testing.assert_array_equal(errors.numpy(), [[0, 2, 2], [0, 1, 1], [1, 1, 2]])


def test_prior_leaves_unlisted_dimensions_free():
    pred = _batch(SHAPES_3D)
    errors = compute_betti_error(pred, prior=[(1,)] * len(SHAPES_3D))
    assert errors.sum() == 0  # every 3D shape is one component; β1 and β2 are not constrained
    errors = compute_betti_error(pred, prior=[(0, (3, None))] * len(SHAPES_3D))[:, 0]
    expected = [[1, max(3 - _betti(n)[1], 0), 0] for n in SHAPES_3D]
    np.testing.assert_array_equal(errors[:, :-1].numpy(), expected)


def test_unknown_prior_items_are_nan_and_left_out_of_the_mean():
    pred = _batch(["disc", "ring", "ring"])
    expected = [np.nan, 0.0, 1.0]
    list_prior = [None, (1, 1), (1, 0)]
    array_prior = torch.tensor([[np.nan, np.nan], [1, 1], [1, 0]])
    range_prior = torch.tensor([[[np.nan] * 2] * 2, [[1, 1], [1, 1]], [[1, 1], [0, 0]]])
    for prior in (list_prior, array_prior, range_prior):
        np.testing.assert_array_equal(compute_betti_error(pred, prior=prior)[:, 0, -1].numpy(), expected)
    metric = BettiErrorMetric(get_not_nans=True)
    metric(pred, prior=list_prior)
    value, not_nans = metric.aggregate()
    assert value.item() == 0.5 and not_nans.item() == 2


def test_homology_dim_selects_one_column():
    pred = _batch(["two_rings", "figure_eight"])
    truth = _batch(["ring", "ring"], size=pred.shape[2:])
    errors = compute_betti_error(pred, truth)
    for k in (0, 1):
        torch.testing.assert_close(BettiErrorMetric(homology_dim=k, reduction="none")(pred, truth), errors[..., k])
    torch.testing.assert_close(BettiErrorMetric(reduction="none")(pred, truth), errors[..., -1])


@pytest.mark.parametrize("names", [SHAPES_2D, SHAPES_3D], ids=["2d", "3d"])
def test_topological_correctness(names):
    pred = _batch(names)
    expected = [[float(n == names[0])] for n in names]
    correct = compute_topological_correctness(pred, prior=[_betti(names[0])] * len(names))
    np.testing.assert_array_equal(correct.numpy(), expected)
    truth = _batch([names[0]] * len(names), size=pred.shape[2:])
    np.testing.assert_array_equal(compute_topological_correctness(pred, truth).numpy(), expected)
    metric = TopologicalCorrectnessMetric(prior=_betti(names[0]))
    metric(pred[:2])
    metric(pred[2:])
    assert metric.aggregate().item() == pytest.approx(1 / len(names))


def test_list_input_matches_batch_input_with_per_item_priors():
    pred = _batch(["disc", "ring", "two_rings"])
    prior = torch.tensor([[1, 0], [1, 0], [1, 0]])
    by_batch = BettiErrorMetric(reduction="none")(pred, prior=prior)
    by_list = BettiErrorMetric(reduction="none")(list(pred), prior=list(prior))
    torch.testing.assert_close(by_list, by_batch)
    torch.testing.assert_close(BettiErrorMetric(reduction="none")(list(pred), list(pred)), torch.zeros(3, 1))


def _multichannel_batches():
    """Two batches of (3, 2, 21, 21) rings/discs/empty channels with their known Betti numbers;
    empty truth channels are NaN under ignore_empty."""
    disc = np.zeros((21, 21), np.float32)
    disc[5:15, 5:15] = 1
    masks = {"ring": (ring().astype(np.float32), (1, 1)), "disc": (disc, (1, 0)), "empty": (0 * disc, (0, 0))}
    truth = [["ring", "empty"], ["empty", "empty"], ["ring", "ring"]]
    truth += [["ring", "disc"], ["empty", "ring"], ["ring", "ring"]]
    pred = [["ring", "disc"], ["disc", "empty"], ["disc", "ring"]]
    pred += [["ring", "ring"], ["empty", "disc"], ["ring", "ring"]]
    expected = [
        [np.nan if t == "empty" else float(np.abs(np.subtract(masks[p][1], masks[t][1])).sum()) for p, t in zip(*row)]
        for row in zip(pred, truth)
    ]
    as_tensor = lambda names: torch.tensor(np.array([[masks[n][0] for n in row] for row in names]))  # noqa: E731
    pred, truth = as_tensor(pred), as_tensor(truth)
    return [(pred[:3], truth[:3]), (pred[3:], truth[3:])], np.array(expected)


def _reference_reduction(values, reduction):
    """MONAI's documented reduction semantics, written with numpy nan-aware functions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        if reduction == "mean":
            return np.nan_to_num(np.nanmean(np.nanmean(values, 1), 0))
        if reduction == "sum":
            return np.nansum(values)
        axis = 0 if reduction.endswith("batch") else 1
        if reduction.startswith("mean"):
            return np.nan_to_num(np.nanmean(values, axis))
        return np.nansum(values, axis)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_aggregation_follows_monai_dice(reduction):
    ours = BettiErrorMetric(include_background=True, reduction=reduction, get_not_nans=True, ignore_empty=True)
    dice = DiceMetric(include_background=True, reduction=reduction, get_not_nans=True, ignore_empty=True)
    batches, expected = _multichannel_batches()
    for pred, truth in batches:
        ours(pred, truth)
        dice(pred, truth)
    value, not_nans = ours.aggregate()
    dice_value, dice_not_nans = dice.aggregate()
    torch.testing.assert_close(not_nans, dice_not_nans)  # the same entries are left out, counted the same way
    assert value.shape == dice_value.shape
    if reduction == "none":
        np.testing.assert_array_equal(value.numpy(), expected)
    else:
        np.testing.assert_allclose(value.numpy().squeeze(), _reference_reduction(expected, reduction))
    ours.reset()
    with pytest.raises(ValueError, match="nothing to aggregate"):
        ours.aggregate()


def _reference_vi(a, b):
    """VI by counting label pairs in pure python, entropies by scipy."""
    a, b = a.ravel().tolist(), b.ravel().tolist()
    h = lambda counts: entropy(list(counts.values()))  # noqa: E731
    return 2 * h(Counter(zip(a, b))) - h(Counter(a)) - h(Counter(b))


@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 5)])
def test_vi_of_label_maps_equals_direct_entropies(shape):
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 4, (3, 1, *shape))
    truth = rng.integers(0, 3, (3, 1, *shape))
    truth[0] = pred[0] * 7 + 1  # a relabelling of the same partition: VI 0
    vi = compute_variation_of_information(torch.from_numpy(pred), torch.from_numpy(truth))
    expected = [[_reference_vi(p, t)] for p, t in zip(pred, truth)]
    np.testing.assert_allclose(vi.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert vi[0, 0] == pytest.approx(0, abs=1e-6)
    # symmetric, and bounded by log(n)
    torch.testing.assert_close(compute_variation_of_information(truth, pred), vi)
    assert (vi <= np.log(np.prod(shape)) + 1e-6).all()


def test_vi_of_binary_masks_is_per_channel():
    rng = np.random.default_rng(1)
    pred = rng.random((2, 3, 6, 6)) > 0.5
    truth = rng.random((2, 3, 6, 6)) > 0.5
    vi = VariationOfInformationMetric(include_background=True, reduction="none")(
        torch.from_numpy(pred), torch.from_numpy(truth)
    )
    expected = [[_reference_vi(pc, tc) for pc, tc in zip(p, t)] for p, t in zip(pred, truth)]
    np.testing.assert_allclose(vi.numpy(), expected, rtol=1e-5)
    metric = VariationOfInformationMetric(get_not_nans=True)  # channel 0 left out by default
    metric(torch.from_numpy(pred), torch.from_numpy(truth))
    value, not_nans = metric.aggregate()
    assert value.item() == pytest.approx(np.mean(np.array(expected)[:, 1:]), rel=1e-5)
    assert not_nans.item() == 2


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: compute_betti_error(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 5, 6)), "same shape"),
        (lambda: compute_betti_error(torch.rand(1, 1, 5, 5), torch.zeros(1, 1, 5, 5)), "y_pred must be binarised"),
        (lambda: compute_betti_error(torch.zeros(1, 1, 5, 5), torch.rand(1, 1, 5, 5)), "y must be binarised"),
        (lambda: compute_betti_error(torch.zeros(5, 5), prior=[(1, 0)]), r"y_pred must have shape \(B, C, H, W\)"),
        (lambda: compute_betti_error(torch.zeros(1, 1, 5, 5)), "neither"),
        (lambda: compute_betti_error(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 5, 5), [(1, 0)]), "both"),
        (lambda: compute_betti_error(torch.zeros(1, 1, 4, 4), prior=[(1, 0, 0)]), "2D image has only homology"),
        (lambda: compute_betti_error(torch.zeros(2, 1, 4, 4), prior=[(1, 0)]), "1 per-item priors for a batch of 2"),
        (lambda: compute_betti_error(torch.zeros(2, 1, 4, 4), prior=torch.ones(2)), r"shape \(B, d\)"),
        (lambda: compute_betti_error(torch.zeros(1, 1, 4, 4), prior=[(-1, 0)]), ">= 0"),
        (lambda: compute_betti_error(torch.zeros(1, 1, 4, 4), prior=[(1.5, 0)]), "whole number"),
        (lambda: compute_betti_error(torch.zeros(1, 1, 4, 4), prior=[(1, (2, 1))]), "min > max"),
        (lambda: compute_betti_error(torch.zeros(1, 1, 4, 4), prior=[(1, (0, 1, 2))]), "count or a"),
        (lambda: compute_betti_error(torch.zeros(1, 1, 4, 4), prior=[()]), "empty"),
        (lambda: compute_betti_error(torch.zeros(1, 1, 4, 4), prior=["ab"]), "sequence of Betti numbers"),
        (lambda: compute_betti_error(torch.zeros(1, 1, 4, 4), prior=[(1, 0)], ignore_empty=True), "ignore_empty"),
        (lambda: compute_betti_error(torch.zeros(1, 1, 4, 4), prior=[(1, 0)], connectivity="8"), "connectivity"),
        (lambda: BettiErrorMetric(prior=(1, -1)), ">= 0"),
        (lambda: BettiErrorMetric(prior=5), "sequence of Betti numbers"),
        (lambda: BettiErrorMetric(prior=(1, 0), ignore_empty=True), "ignore_empty"),
        (lambda: BettiErrorMetric(homology_dim=3), "homology_dim"),
        (lambda: BettiErrorMetric(homology_dim=2)(torch.zeros(1, 1, 4, 4), prior=[(1, 0)]), "homology_dim=2"),
        (lambda: BettiErrorMetric(prior=(1, 0))(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)), "both"),
        (lambda: BettiErrorMetric()([torch.zeros(1, 4, 4)] * 2, prior=[(1, 0)]), r"1 per-item priors for a batch of 2 items"),
        (lambda: compute_variation_of_information(torch.rand(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)), "integer labels"),
        (lambda: compute_variation_of_information(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4)), "same shape"),
        (lambda: VariationOfInformationMetric()(torch.zeros(1, 1, 4, 4)), "y .* is required"),
    ],
)
def test_bad_input_raises_clear_errors(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
