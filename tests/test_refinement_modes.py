"""Fast refinement modes of Eq. 5: the refined tail with frozen activations computed once, the ROI, bfloat16.

Each mode, on a 3D U-Net trained here on blobs whose distractors it segments as extra components,
must fix at least as many of the hard cases as whole-network refinement, keep Dice within 0.15 of
it (the toy network segments the distractors as confidently as the blob, so removing them shrinks
the blob and costs Dice in every mode; measured here: whole network 2 of 4 fixed, mean Dice 0.65 ->
0.56; tail 4 of 4 fixed, 0.65 -> 0.43; tail in bfloat16 4 of 4, 0.65 -> 0.48; the whole network in
bfloat16 at 3e-3, 4 of 4, 0.65 -> 0.56; at the baseline's 1e-3 bfloat16 fixed 1 of 4 within the 60 steps, and
float32 at 3e-3 4 of 4), and leave the caller's network bit for bit unchanged; the
cached activations must give the output of a full forward pass of the refined network.
"""

import copy

import numpy as np
import pytest
import torch
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import UNet
from scipy import ndimage

from monai_topo.transforms import refine_with_topology
from monai_topo.transforms.frozen_activations import cache_frozen_activations, last_parameterised_layers
from test_postprocess import _assert_unchanged, _blob_item, _dice, _state, _train

BLOB = (1, 0, 0)
# λ = 0.1, at most 60 steps. The tail mode refines the last two decoder stages of this U-Net
# (7 parameterised layers) with ten times the whole network's learning rate: fewer, larger steps.
MODES = {
    "whole network": {"lr": 1e-3},
    "tail": {"refine_last": 7, "lr": 1e-2},
    "tail, no cache": {"refine_last": 7, "lr": 1e-2, "cache_frozen": False},
    "tail, bfloat16": {"refine_last": 7, "lr": 1e-2, "amp": True},
    # the large-volume recipe of the placenta bundle: the whole network in bfloat16 at a larger step
    "whole network, bfloat16, larger step": {"lr": 3e-3, "amp": True},
}
DICE_MARGIN = 0.15


@pytest.fixture(scope="module")
def blob_net():
    rng = np.random.default_rng(2)
    torch.manual_seed(2)
    items = [_blob_item(rng) for _ in range(8)] + [_blob_item(rng, hard=True) for _ in range(4)]
    net = UNet(3, 1, 1, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    return _train(net, [i for i, _, _ in items], [bright for _, _, bright in items], steps=60)


@pytest.fixture(scope="module")
def outcomes(blob_net):
    """For each mode: (fixed, hard cases, mean Dice after, mean Dice before), the network checked unchanged."""
    cases = [_blob_item(np.random.default_rng(10 + k), hard=True) for k in range(4)]
    results = {}
    for mode, kwargs in MODES.items():
        before = _state(blob_net)
        wrong, fixed, dice_before, dice_after = 0, 0, [], []
        for image, label, _ in cases:
            probs, _ = refine_with_topology(blob_net, torch.from_numpy(image), prior=BLOB, lambda_topo=0.1,
                                            iterations=60, **kwargs)
            with torch.no_grad():
                initial = torch.sigmoid(blob_net(torch.from_numpy(image)[None]))[0, 0].numpy() >= 0.5
            refined = probs[0].numpy() >= 0.5
            # components by scipy's 26-connected labelling, independent of the package's Betti numbers
            components = ndimage.label(initial, np.ones((3, 3, 3)))[1]
            if components != 1:
                wrong += 1
                fixed += ndimage.label(refined, np.ones((3, 3, 3)))[1] == 1
                dice_before.append(_dice(initial, label[0]))
                dice_after.append(_dice(refined, label[0]))
        _assert_unchanged(blob_net, before)
        results[mode] = (fixed, wrong, float(np.mean(dice_after)), float(np.mean(dice_before)))
    return results


@pytest.mark.parametrize("mode", [m for m in MODES if m != "whole network"])
def test_fast_mode_fixes_as_many_with_dice_within_margin(outcomes, mode):
    fixed, wrong, dice_after, _ = outcomes[mode]
    whole_fixed, whole_wrong, whole_dice, _ = outcomes["whole network"]
    assert wrong == whole_wrong >= 3, "the hard cases should break the briefly trained network's topology"
    assert fixed >= whole_fixed
    assert dice_after >= whole_dice - DICE_MARGIN


def test_cache_changes_nothing_but_time(outcomes):
    assert outcomes["tail, no cache"] == pytest.approx(outcomes["tail"], abs=1e-6)


def test_whole_network_refinement_fixes_the_hard_cases(outcomes):
    fixed, wrong, dice_after, dice_before = outcomes["whole network"]
    assert fixed >= 1
    assert dice_after >= dice_before - DICE_MARGIN


def _tail_copy(net, count):
    work = copy.deepcopy(net).eval()
    tail = {id(p) for name in last_parameterised_layers(work, count) for p in work.get_submodule(name).parameters()}
    for p in work.parameters():
        p.requires_grad_(id(p) in tail)
    return work


@pytest.mark.parametrize("count", [1, 3, 7])
@pytest.mark.parametrize("windowed", [False, True])
def test_cached_activations_equal_a_full_forward_pass(blob_net, count, windowed):
    x = torch.rand(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(count))
    work = _tail_copy(blob_net, count)
    inferer = SlidingWindowInferer((8, 8, 8), overlap=0.5) if windowed else (lambda inputs, network: network(inputs))
    first, cached = cache_frozen_activations(work, lambda: inferer(x, work))
    assert cached  # the frozen prefix is cached
    with torch.no_grad():
        torch.testing.assert_close(first, inferer(x, blob_net))
    # move the refined parameters as a few optimiser steps would, then compare with an uncached network
    generator = torch.Generator().manual_seed(0)
    reference = copy.deepcopy(blob_net).eval()
    with torch.no_grad():
        for p, q in zip(work.parameters(), reference.parameters()):
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
                q.copy_(p)
        expected = inferer(x, reference)
    out = inferer(x, work)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    out.sum().backward()  # gradients reach the refined parameters only
    assert all((p.grad is not None) == p.requires_grad for p in work.parameters())


def test_refined_output_equals_full_forward_of_refined_weights(blob_net):
    image, _, _ = _blob_item(np.random.default_rng(11), hard=True)
    captured = []

    def optimizer(params):
        captured.extend(params)
        return torch.optim.Adam(params, lr=1e-3)

    probs, record = refine_with_topology(blob_net, torch.from_numpy(image), prior=BLOB, lambda_topo=1.0,
                                         iterations=5, stop_when_satisfied=False, refine_last=3, optimizer=optimizer)
    assert record["cached_modules"] and record["iterations"] == 5
    assert len(record["refined_parameters"]) == len(captured) < len(list(blob_net.parameters()))
    refined = copy.deepcopy(blob_net).eval()
    with torch.no_grad():
        for name, value in zip(record["refined_parameters"], captured):
            refined.get_parameter(name).copy_(value)
        full = torch.sigmoid(refined(torch.from_numpy(image)[None]))[0]
    # the last output is that of the weights after the last step: a full forward pass agrees
    torch.testing.assert_close(probs, full, rtol=1e-5, atol=1e-6)


def test_refine_last_names_the_fix():
    net = UNet(3, 1, 1, channels=(4, 8), strides=(2,), num_res_units=0)
    with pytest.raises(ValueError, match="refine_last must be None"):
        refine_with_topology(net, torch.rand(1, 8, 8, 8), prior=BLOB, refine_last=0)
    frozen = copy.deepcopy(net)
    for name in last_parameterised_layers(frozen, 2):
        frozen.get_submodule(name).requires_grad_(False)
    with pytest.raises(ValueError, match="train_frozen=True"):
        refine_with_topology(frozen, torch.rand(1, 8, 8, 8), prior=BLOB, refine_last=2)


def test_auto_roi_crops_large_volumes_only():
    """``roi_threshold="auto"`` (the default) refines a 64×128×128 volume on the box of its likely
    foreground (compared with the box from numpy's own argwhere), a smaller one whole."""
    net = torch.nn.Conv3d(1, 1, 1)
    with torch.no_grad():
        net.weight.fill_(1.0)
        net.bias.fill_(0.0)
    large = torch.full((1, 64, 128, 128), -6.0)
    large[0, 20:40, 30:90, 40:100] = 6.0  # sigmoid: 0.998 inside, 0.002 outside
    _, record = refine_with_topology(net, large, prior=BLOB, iterations=0)
    inside = np.argwhere(torch.sigmoid(large[0]).numpy() > 0.2)
    start, end = inside.min(0) - 8, inside.max(0) + 1 + 8  # the default margin, before rounding up to 16
    assert record["roi"] is not None
    assert all(s <= a and b <= e for s, e, a, b in zip(*record["roi"], start, end))
    assert all((e - s) % 16 == 0 for s, e in zip(*record["roi"]))
    _, record = refine_with_topology(net, large[:, :32], prior=BLOB, iterations=0)
    assert record["roi"] is None
    with pytest.raises(ValueError, match="'auto' or None"):
        refine_with_topology(net, large[:, :32], prior=BLOB, roi_threshold="box")


def test_ph_floor_scores_the_floored_map():
    """With ``ph_floor``, the first Eq. 5 loss (the MSE term is 0 at the start) is λ·L_topo of max(p, floor),
    computed here with gudhi's cubical complex and Eq. 3 (super-level filtration: gudhi on 1 − p)."""
    gudhi = pytest.importorskip("gudhi")
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    image = torch.rand(1, 12, 12)
    _, record = refine_with_topology(net, image, prior=(1, 0), iterations=1, stop_when_satisfied=False,
                                     lambda_topo=1.0, ph_floor=0.3, connectivity="full")
    with torch.no_grad():
        p = torch.sigmoid(net(image[None]))[0, 0].clamp_min(0.3).numpy().astype(np.float64)
    complex_ = gudhi.CubicalComplex(top_dimensional_cells=1 - p)  # pixels as top cells: "full"
    complex_.compute_persistence()
    expected = 0.0
    for dim, want in ((0, 1), (1, 0)):
        bars = complex_.persistence_intervals_in_dimension(dim)
        lengths = sorted((min(d, 1.0) - b for b, d in bars), reverse=True)  # essential bars cut at p = 0
        expected += sum(1 - x**2 for x in lengths[:want]) + sum(x**2 for x in lengths[want:])
    assert record["loss"][0] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    with pytest.raises(ValueError, match="ph_floor=0.6 must be below threshold"):
        refine_with_topology(net, image, prior=(1, 0), ph_floor=0.6)


def test_roi_mode_returns_an_item_that_has_the_prior_unchanged():
    """Zero steps: the whole item's prediction, not the box's (which differs at the box edges, by padding)."""
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    with torch.no_grad():
        net.weight.fill_(1.0)
        net.weight[0, 0, 1, 1] = 10.0
        net.bias.fill_(-7.0)  # logit 10 x + neighbours - 7: a bright disc above 0.5, a grey background below 0.2
    yy, xx = np.mgrid[:48, :48]
    disc = (yy - 24) ** 2 + (xx - 24) ** 2 <= 36
    image = torch.from_numpy(np.where(disc, 1.0, 0.3).astype(np.float32))[None]
    with torch.no_grad():
        whole = torch.sigmoid(net(image[None]))[0]
        box = torch.sigmoid(net(image[None, :, 18:31, 18:31]))[0]
    assert not torch.equal(box, whole[:, 18:31, 18:31])  # the premise: a cropped input changes the edge pixels
    for prior in ((1, 0), (2, 0)):  # satisfied, and not satisfied with no step allowed
        probs, record = refine_with_topology(net, image, prior, roi_threshold=0.2, roi_margin=0, roi_divisible=1,
                                             iterations=0, sigmoid=True)
        assert record["roi"] is not None and record["iterations"] == 0
        assert record["betti_after"] == record["betti_before"] == [(1, 0)]
        assert torch.equal(probs, whole)


def test_bfloat16_steps_keep_the_networks_own_initial_prediction(blob_net):
    """With ``amp=True`` the Betti numbers before and a zero-step result are those of the network's
    float32 output (a plain forward pass here), only the steps run in bfloat16; ``"auto"`` leaves
    small items in float32; anything but a flag or "auto" is refused by name."""
    image, _, _ = _blob_item(np.random.default_rng(12), hard=True)
    x = torch.from_numpy(image)
    with torch.no_grad():
        expected = torch.sigmoid(blob_net(x[None]))[0]
    probs, record = refine_with_topology(blob_net, x, prior=BLOB, iterations=0, amp=True)
    assert record["amp"] is True and record["iterations"] == 0
    torch.testing.assert_close(probs, expected, rtol=0, atol=0)
    components = ndimage.label(expected[0].numpy() >= 0.5, np.ones((3, 3, 3)))[1]
    assert record["betti_before"][0][0] == components
    _, record = refine_with_topology(blob_net, x, prior=BLOB, iterations=1, stop_when_satisfied=False)
    assert record["amp"] is False  # "auto": a 16x16x16 item is not large
    with pytest.raises(ValueError, match="amp must be True, False or 'auto', got 'bf16'"):
        refine_with_topology(blob_net, x, prior=BLOB, amp="bf16")
    with pytest.raises(TypeError, match="amp"):
        refine_with_topology(blob_net, x, prior=BLOB, amp=1)
