"""TopologicalPostprocess(d): Eq. 5 test-time refinement on briefly trained U-Nets (2D rings, 3D blobs)."""

import copy

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator
from monai.networks.nets import UNet
from monai.transforms import Compose

from monai_topo.ph import betti_numbers
from monai_topo.transforms import TopologicalPostprocess, TopologicalPostprocessd, refine_with_topology

RECORD = "topological_postprocess"


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2 * (a & b).sum() / max(1, a.sum() + b.sum())


def _ring_item(rng, size=32, hard=False):
    """Image and ring label; hard items get a dark gap in the ring and bright distractor blobs."""
    yy, xx = np.mgrid[:size, :size].astype(float)
    cy, cx = size / 2 + rng.uniform(-2, 2, 2)
    radius, thickness = rng.uniform(7, 10), rng.uniform(2.5, 4)
    r = np.hypot(yy - cy, xx - cx)
    label = np.abs(r - radius) <= thickness / 2
    image = label * 0.8 + 0.1
    if hard:
        angle = rng.uniform(-np.pi, np.pi)
        theta = np.arctan2(yy - cy, xx - cx)
        gap = np.abs(np.angle(np.exp(1j * (theta - angle)))) < 0.35
        image = np.where(label & gap, 0.35, image)
        for _ in range(2):
            by, bx = rng.integers(2, size - 3, 2)
            if r[by, bx] > radius + thickness + 3 or r[by, bx] < radius - thickness - 3:
                image[by - 1 : by + 2, bx - 1 : bx + 2] = 0.7
    image = image + rng.normal(0, 0.12, image.shape)
    return image[None].astype(np.float32), label[None].astype(np.float32)


def _train(net, images, labels, steps, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    x, y = torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return net.eval()


@pytest.fixture(scope="module")
def ring_net():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    items = [_ring_item(rng) for _ in range(24)]
    net = UNet(2, 1, 1, channels=(8, 16, 32), strides=(2, 2), num_res_units=0)
    return _train(net, [i for i, _ in items], [l for _, l in items], steps=120)


@pytest.fixture(scope="module")
def hard_rings():
    rng = np.random.default_rng(1)
    return [_ring_item(rng, hard=True) for _ in range(12)]


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}, [p.requires_grad for p in net.parameters()], net.training


def _assert_unchanged(net, before):
    state, flags, training = before
    after = net.state_dict()
    assert state.keys() == after.keys()
    for k in state:
        assert torch.equal(state[k], after[k]), k
    assert [p.requires_grad for p in net.parameters()] == flags
    assert net.training == training
    assert all(p.grad is None for p in net.parameters())


def test_rings_become_rings_without_losing_dice(ring_net, hard_rings):
    before = _state(ring_net)
    wrong, fixed, dice_before, dice_after = 0, 0, [], []
    for image, label in hard_rings:
        probs, record = refine_with_topology(
            ring_net, torch.from_numpy(image), prior=(1, 1), lambda_topo=1.0, lr=1e-3, iterations=200
        )
        initial = torch.sigmoid(ring_net(torch.from_numpy(image)[None]))[0, 0].detach().numpy() >= 0.5
        assert record["betti_before"] == [betti_numbers(initial)]  # independent check of the record
        refined = probs[0].numpy() >= 0.5
        assert record["betti_after"] == [betti_numbers(refined)]
        if record["betti_before"] != [(1, 1)]:
            wrong += 1
            fixed += betti_numbers(refined) == (1, 1)
            dice_before.append(_dice(initial, label[0]))
            dice_after.append(_dice(refined, label[0]))
    assert wrong >= 6, "the hard cases should break the briefly trained network's topology"
    assert fixed / wrong >= 0.75
    assert np.mean(dice_after) >= np.mean(dice_before) - 0.05
    _assert_unchanged(ring_net, before)


def _blob_item(rng, size=16, hard=False):
    """Image and solid-ball label; hard items get two bright cubes (the label of training items
    marks everything bright, so the network learns to segment distractors too)."""
    zz, yy, xx = np.mgrid[:size, :size, :size].astype(float)
    c = size / 2 + rng.uniform(-1, 1, 3)
    radius = rng.uniform(3.5, 5)
    label = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) <= radius
    image = label * 0.8 + 0.1
    if hard:
        for corner in ([2, 2, 2], [size - 3, size - 3, 2]):
            z, y, x = corner
            image[z - 1 : z + 2, y - 1 : y + 2, x - 1 : x + 2] = 0.75
    bright = image > 0.5
    image = image + rng.normal(0, 0.1, image.shape)
    return image[None].astype(np.float32), label[None].astype(np.float32), bright[None].astype(np.float32)


def test_blobs_lose_spurious_components_3d():
    rng = np.random.default_rng(2)
    torch.manual_seed(2)
    items = [_blob_item(rng) for _ in range(8)] + [_blob_item(rng, hard=True) for _ in range(4)]
    net = _train(UNet(3, 1, 1, channels=(4, 8), strides=(2,), num_res_units=0),
                 [i for i, _, _ in items], [bright for _, _, bright in items], steps=60)
    # the network was taught that bright blobs are foreground, so the distractors come out as components
    cases = [_blob_item(np.random.default_rng(10 + k), hard=True) for k in range(4)]
    before = _state(net)
    wrong, fixed, dice_before, dice_after = 0, 0, [], []
    for image, label, _ in cases:
        probs, record = refine_with_topology(
            net, torch.from_numpy(image), prior=(1, 0, 0), lambda_topo=1.0, lr=1e-3, iterations=150
        )
        initial = torch.sigmoid(net(torch.from_numpy(image)[None]))[0, 0].detach().numpy() >= 0.5
        refined = probs[0].numpy() >= 0.5
        if betti_numbers(initial) != (1, 0, 0):
            wrong += 1
            fixed += betti_numbers(refined) == (1, 0, 0)
            dice_before.append(_dice(initial, label[0]))
            dice_after.append(_dice(refined, label[0]))
    assert wrong >= 3
    assert fixed / wrong >= 0.75
    assert np.mean(dice_after) >= np.mean(dice_before) - 0.05
    _assert_unchanged(net, before)


def test_network_unchanged_after_error_mid_way(ring_net, hard_rings):
    ring_net.train()  # a caller's mode and flags must survive, whatever they are
    ring_net.model[0].conv.weight.requires_grad_(False)
    before = _state(ring_net)
    calls = {"n": 0}

    def failing_inferer(inputs, network):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("boom")
        return network(inputs)

    with pytest.raises(RuntimeError, match="boom"):
        refine_with_topology(ring_net, torch.from_numpy(hard_rings[0][0]), prior=(1, 1), inferer=failing_inferer,
                             lambda_topo=1.0, lr=1e-2, iterations=10, stop_when_satisfied=False)
    assert calls["n"] == 4
    _assert_unchanged(ring_net, before)
    ring_net.model[0].conv.weight.requires_grad_(True)
    ring_net.eval()


def test_per_item_priors_and_zero_iterations(ring_net, hard_rings):
    refine = TopologicalPostprocessd("image", ring_net, prior_key="prior", lambda_topo=1.0, lr=1e-3, iterations=50)
    image = torch.from_numpy(hard_rings[0][0])
    initial = betti_numbers(torch.sigmoid(ring_net(image[None]))[0, 0].detach() >= 0.5)
    already = refine({"image": image, "prior": initial})
    assert already["pred"].meta[RECORD]["iterations"] == 0
    assert already["pred"].meta[RECORD]["betti_after"] == [initial]
    ring = refine({"image": image, "prior": torch.tensor([1, 1])})
    assert ring["pred"].meta[RECORD]["iterations"] > 0 or initial == (1, 1)
    assert betti_numbers(ring["pred"][0] >= 0.5) == (1, 1)


def test_on_failure_initial_returns_the_network_output_when_the_prior_is_not_reached(ring_net, hard_rings):
    """A prior no few steps can reach (three holes): "initial" gives the network's own sigmoid back."""
    image = torch.from_numpy(hard_rings[1][0])
    with torch.no_grad():
        own = torch.sigmoid(ring_net(image[None]))[0]
    args = dict(prior=(1, 3), lambda_topo=1.0, lr=1e-3, iterations=2)
    refined, record = refine_with_topology(ring_net, image, **args)
    assert record["iterations"] == 2 and not record["satisfied_after"] and not record["reverted"]
    assert not torch.allclose(refined, own)  # the steps changed the output
    kept, record = refine_with_topology(ring_net, image, on_failure="initial", **args)
    torch.testing.assert_close(kept, own)
    assert record["reverted"] and record["iterations"] == 2
    assert record["betti_after"] == record["betti_before"] == [betti_numbers(own[0] >= 0.5)]
    # a prior that is reached is returned refined, whatever on_failure says
    image = torch.from_numpy(hard_rings[2][0])
    reached, record = refine_with_topology(ring_net, image, (1, 1), lambda_topo=1.0, lr=1e-3, iterations=100,
                                           on_failure="initial")
    assert record["iterations"] > 0 and record["satisfied_after"] and not record["reverted"]
    assert betti_numbers(reached[0] >= 0.5) == (1, 1)
    with pytest.raises(ValueError, match="on_failure"):
        refine_with_topology(ring_net, image, (1, 1), on_failure="best")


def test_roi_mode_matches_full_image_topology(ring_net, hard_rings):
    image = torch.from_numpy(np.pad(hard_rings[1][0], ((0, 0), (16, 16), (16, 16)), constant_values=0.1))
    probs, record = refine_with_topology(ring_net, image, prior=(1, 1), lambda_topo=1.0, lr=1e-3,
                                         iterations=200, roi_threshold=0.1, roi_margin=4)
    assert record["roi"] is not None
    start, end = record["roi"]
    assert all(e - s < n for s, e, n in zip(start, end, image.shape[1:]))  # smaller than the image
    assert record["betti_after"] == [betti_numbers(probs[0] >= 0.5)] == [(1, 1)]


def test_in_supervised_evaluator_postprocessing(ring_net, hard_rings):
    data = [{"image": torch.from_numpy(i), "label": torch.from_numpy(l)} for i, l in hard_rings[:3]]
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(data), batch_size=3),
        network=ring_net,
        postprocessing=Compose([TopologicalPostprocessd("image", ring_net, prior=(1, 1), lambda_topo=1.0,
                                                        lr=1e-3, iterations=100)]),
    )
    evaluator.run()
    outputs = evaluator.state.output
    assert len(outputs) == 3
    for item in outputs:
        assert item["pred"].shape == (1, 32, 32)
        assert item["pred"].meta[RECORD]["betti_after"] == [betti_numbers(item["pred"][0] >= 0.5)]


def test_bad_input(ring_net):
    image = torch.rand(1, 32, 32)
    with pytest.raises(ValueError, match="3 entries"):
        refine_with_topology(ring_net, image, prior=(1, 0, 0))
    with pytest.raises(KeyError, match="prior_key 'prior' is missing"):
        TopologicalPostprocessd("image", ring_net, prior_key="prior")({"image": image})
    nan_net = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        nan_net.bias.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN or Inf"):
        refine_with_topology(nan_net, image, prior=(1, 1))
    with pytest.raises(ValueError, match="optimizer"):
        refine_with_topology(ring_net, image, prior=(1, 1), optimizer="lbfgs")
    with pytest.raises(ValueError, match="no prior"):
        TopologicalPostprocess(ring_net)(image)
    with pytest.raises(ValueError, match="image must be"):
        refine_with_topology(ring_net, torch.rand(32, 32), prior=(1, 1))
    with pytest.raises(ValueError, match=r"first convolution is 3D.*image\[None\]"):
        refine_with_topology(torch.nn.Conv3d(1, 1, 3, padding=1), torch.rand(8, 8, 8), prior=(1, 0))
    with pytest.raises(ValueError, match="expects 1"):
        refine_with_topology(ring_net, torch.rand(2, 32, 32), prior=(1, 1))
    with pytest.raises(ValueError, match="spatial grid"):
        refine_with_topology(torch.nn.Conv2d(1, 1, 3, stride=2), image, prior=(1, 1))
    with pytest.raises(TypeError, match="deep supervision"):
        refine_with_topology(ring_net, image, prior=(1, 1), inferer=lambda x, net: (net(x), net(x)))
    with pytest.raises(ValueError, match="image contains NaN"):
        refine_with_topology(ring_net, torch.full((1, 32, 32), float("nan")), prior=(1, 1))
    for name, value, error in [
        ("threshold", 1.5, ValueError), ("threshold", -0.1, ValueError), ("threshold", float("nan"), ValueError),
        ("lambda_topo", "0.01", TypeError), ("lambda_topo", -1.0, ValueError), ("lr", None, TypeError),
        ("roi_threshold", 0.6, ValueError), ("iterations", 2.5, TypeError), ("train_frozen", "no", TypeError),
    ]:
        with pytest.raises(error, match=name):
            refine_with_topology(ring_net, image, prior=(1, 1), **{name: value})


def _independent_steps_to_prior(net, image, prior, lambda_topo, lr, iterations):
    """Eq. 5 with Adam written from the paper (eq_reference, gudhi), stopping once the mask has the prior."""
    from eq_reference import betti_2d, eq5

    work = copy.deepcopy(net)
    optim = torch.optim.Adam(work.parameters(), lr=lr)
    with torch.no_grad():
        reference = torch.sigmoid(work(image[None])[0])
    for step in range(iterations + 1):
        probs = torch.sigmoid(work(image[None])[0])
        if betti_2d(probs[0].detach().numpy() >= 0.5) == prior:
            return step
        if step == iterations:
            return None
        optim.zero_grad()
        eq5(probs, reference, [(probs[0], prior)], lambda_topo).backward()
        optim.step()


def test_reaches_the_prior_in_no_more_steps_than_an_independent_implementation(ring_net, hard_rings):
    """The paper's λ = 0.01 with lr 1e-3: items that need several steps get there as fast as Eq. 5 does."""
    several = 0
    for image, _ in hard_rings[:6]:
        image = torch.from_numpy(image)
        torch.manual_seed(0)
        _, record = refine_with_topology(ring_net, image, (1, 1), lambda_topo=0.01, lr=1e-3, iterations=40)
        expected = _independent_steps_to_prior(ring_net, image, (1, 1), 0.01, 1e-3, 40)
        if expected is None:
            assert not record["satisfied_after"]
            continue
        assert record["satisfied_after"] and record["iterations"] <= expected
        several += expected >= 2
    assert several >= 2, "the check needs items that take several steps"


@pytest.mark.parametrize("context", ["no_grad", "inference_mode", "eval_mode"])
def test_refinement_inside_inference_contexts(ring_net, hard_rings, context):
    from monai.networks import eval_mode

    image = torch.from_numpy(hard_rings[2][0])
    expected, _ = refine_with_topology(ring_net, image, (1, 1), lambda_topo=1.0, lr=1e-3, iterations=5)
    before = _state(ring_net)
    manager = {"no_grad": torch.no_grad(), "inference_mode": torch.inference_mode(), "eval_mode": eval_mode(ring_net)}
    with manager[context]:
        if context == "inference_mode":
            image = image.clone()  # an inference tensor, as a loader inside inference_mode makes
        probs, record = refine_with_topology(ring_net, image, (1, 1), lambda_topo=1.0, lr=1e-3, iterations=5)
        out = TopologicalPostprocessd("image", ring_net, prior=(1, 1), lambda_topo=1.0, lr=1e-3, iterations=5)(
            {"image": image}
        )
    torch.testing.assert_close(probs, expected)
    torch.testing.assert_close(out["pred"].as_tensor(), expected)
    _assert_unchanged(ring_net, before)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_network_keeps_its_dtype(ring_net, hard_rings, dtype):
    net = copy.deepcopy(ring_net).to(dtype)
    probs, record = refine_with_topology(net, torch.from_numpy(hard_rings[3][0]), (1, 1), lambda_topo=1.0,
                                         lr=1e-3, iterations=3, stop_when_satisfied=False)
    assert record["iterations"] == 3 and probs.dtype == torch.float32 and torch.isfinite(probs).all()
    assert all(p.dtype == dtype for p in net.parameters())


def test_frozen_parameters_stay_frozen_in_the_copy(ring_net, hard_rings):
    net = copy.deepcopy(ring_net)
    encoder = list(net.model[0].parameters())
    for p in encoder:
        p.requires_grad_(False)
    handed = []

    def optimizer(params):
        params = list(params)
        handed.append(params)
        return torch.optim.Adam(params, lr=1e-3)

    image = torch.from_numpy(hard_rings[0][0])
    refine_with_topology(net, image, (1, 1), optimizer=optimizer, iterations=2, stop_when_satisfied=False)
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert len(handed[0]) == len(trainable) < len(list(net.parameters()))
    assert all(p.requires_grad for p in handed[0])
    refine_with_topology(net, image, (1, 1), optimizer=optimizer, iterations=1, train_frozen=True)
    assert len(handed[1]) == len(list(net.parameters()))
    assert not any(p.requires_grad for p in encoder)  # the caller's flags are untouched
    net.requires_grad_(False)
    with pytest.raises(ValueError, match="train_frozen=True"):
        refine_with_topology(net, image, (1, 1))
