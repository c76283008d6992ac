"""Tests of the Betti-number prior loss, the prior parsing and the combining wrapper."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from monai.data import MetaTensor
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss, DiceLoss

from monai_topo.losses import (
    BettiMatchingLoss,
    PersistenceMatchingLoss,
    TopologicalPriorLoss,
    TopologicalWrapperLoss,
    prior_loss_from_diagram,
)
from monai_topo.ph import PersistenceDiagram, betti_numbers, cubical_persistence
from monai_topo.priors import parse_prior

from shapes import ring


def diagram(bars, spatial_shape=(8, 8)):
    """A hand-made diagram from ``(dim, birth, death)`` triples."""
    table = torch.tensor(bars, dtype=torch.float64).reshape(-1, 3)
    n = len(table)
    return PersistenceDiagram(
        dims=table[:, 0].long(),
        births=table[:, 1].clone().requires_grad_(),
        deaths=table[:, 2],
        birth_index=torch.arange(n),
        death_index=torch.arange(n),
        essential=torch.zeros(n, dtype=torch.bool),
        spatial_shape=spatial_shape,
        maxdim=len(spatial_shape) - 1,
    )


# lengths: dim 0 -> 1.0, 0.7, 0.1 ; dim 1 -> 0.4, 0.1
SMALL = diagram([(0, 1.0, 0.0), (0, 0.8, 0.1), (0, 0.3, 0.2), (1, 0.9, 0.5), (1, 0.2, 0.1)])


def smooth_maps(shape, seed, sigma=2.0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=[0, 0, *[sigma] * (len(shape) - 2)])
    lo = x.min(axis=tuple(range(2, len(shape))), keepdims=True)
    hi = x.max(axis=tuple(range(2, len(shape))), keepdims=True)
    return torch.tensor((x - lo) / (hi - lo), dtype=torch.float32)


# ---------------------------------------------------------------- Eq. 3-4 by hand


@pytest.mark.parametrize(
    "prior, weights, expected",
    [
        ((1, 1), None, (0.49 + 0.01) + ((1 - 0.16) + 0.01)),
        ((1, 1), (2.0, 0.5), 2 * (0.49 + 0.01) + 0.5 * ((1 - 0.16) + 0.01)),
        ((2, 0), None, (0 + (1 - 0.49) + 0.01) + (0.16 + 0.01)),
        # more bars wanted than present: each missing bar counts as a bar of length 0
        ((3, 3), None, ((1 - 0.49) + (1 - 0.01)) + ((1 - 0.16) + (1 - 0.01) + 1)),
        ((1,), None, 0.49 + 0.01),  # dimension 1 unconstrained
        ((0, 0), None, 1 + 0.49 + 0.01 + 0.16 + 0.01),
        # ranges: ranks between min and max are ignored
        (((1, 2), (0, 1)), None, 0.01 + 0.01),
        (((0, None), (2, None)), None, (1 - 0.16) + (1 - 0.01)),
    ],
)
def test_eq3_by_hand(prior, weights, expected):
    loss = prior_loss_from_diagram(SMALL, prior, weights)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_eq3_on_image_through_the_class():
    x = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    x[..., 2:7, 2:7] = 0.9
    x[..., 4, 4] = 0.2
    x[..., 0, 0] = 0.3  # a blob, merging with the ring only at 0
    lengths = sorted(cubical_persistence(x[0, 0]).lengths().tolist(), reverse=True)
    assert lengths == pytest.approx([0.9, 0.7, 0.3])
    loss = TopologicalPriorLoss(prior=(1, 1))(x)
    assert float(loss) == pytest.approx((1 - 0.81) + 0.09 + (1 - 0.49))


@given(
    bars=st.lists(
        st.tuples(st.integers(0, 1), st.one_of(st.just(1.0), st.floats(0.05, 1.0))), min_size=0, max_size=6
    ),
    prior=st.tuples(st.integers(0, 3), st.integers(0, 3)),
)
def test_zero_exactly_when_diagram_matches_prior(bars, prior):
    dgm = diagram([(dim, length, 0.0) for dim, length in bars])
    loss = prior_loss_from_diagram(dgm, prior).item()
    matches = all(
        sum(1 for d, _ in bars if d == k) == prior[k] and all(length == 1.0 for d, length in bars if d == k)
        for k in range(2)
    )
    assert loss >= 0
    assert (loss == 0) == matches


def test_range_ignores_bars_inside_it():
    lengths = torch.tensor([0.9, 0.8, 0.6, 0.5, 0.2], dtype=torch.float64, requires_grad=True)
    dgm = PersistenceDiagram(
        torch.ones(5, dtype=torch.long), lengths, torch.zeros(5, dtype=torch.float64),
        torch.arange(5), torch.arange(5), torch.zeros(5, dtype=torch.bool), (8, 8), 1,
    )  # fmt: skip
    loss = prior_loss_from_diagram(dgm, (0, (1, 3)))
    assert loss.item() == pytest.approx((1 - 0.81) + 0.25 + 0.04)
    loss.backward()
    grad = lengths.grad.tolist()
    assert grad[1] == grad[2] == 0  # ranked 2nd and 3rd: inside [1, 3]
    assert grad[0] == pytest.approx(-1.8) and grad[3] == pytest.approx(1.0) and grad[4] == pytest.approx(0.4)


def test_weights_validation():
    with pytest.raises(ValueError, match="weights"):
        TopologicalPriorLoss(prior=(1, 1), weights=(1.0, -1.0))
    with pytest.raises(ValueError, match="fewer entries"):
        TopologicalPriorLoss(prior=(1, 1), weights=(1.0,))
    with pytest.raises(TypeError, match="weights"):
        TopologicalPriorLoss(prior=(1, 1), weights=1.0)


# ---------------------------------------------------------------- the class


def test_reduction_shapes_and_background():
    x = smooth_maps((3, 2, 16, 16), 0)
    none = TopologicalPriorLoss(prior=(1, 1), reduction="none")(x)
    assert none.shape == (3, 2, 1, 1)
    assert float(TopologicalPriorLoss(prior=(1, 1))(x)) == pytest.approx(float(none.mean()))
    assert float(TopologicalPriorLoss(prior=(1, 1), reduction="sum")(x)) == pytest.approx(float(none.sum()))
    no_bg = TopologicalPriorLoss(prior=(1, 1), include_background=False, reduction="none")(x)
    assert torch.equal(no_bg, none[:, 1:])
    volume = smooth_maps((2, 1, 8, 8, 8), 1)
    assert TopologicalPriorLoss(prior=(1, 0, 0), reduction="none")(volume).shape == (2, 1, 1, 1, 1)
    with pytest.warns(UserWarning, match="include_background"):
        TopologicalPriorLoss(prior=(1,), include_background=False)(volume)


def test_activations():
    logits = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    prior = (1, 0)
    expect = TopologicalPriorLoss(prior, reduction="none")
    assert torch.allclose(TopologicalPriorLoss(prior, sigmoid=True, reduction="none")(logits), expect(logits.sigmoid()))
    assert torch.allclose(
        TopologicalPriorLoss(prior, softmax=True, include_background=False, reduction="none")(logits),
        expect(logits.softmax(1))[:, 1:],
    )
    with pytest.raises(ValueError, match="include_background=False"):
        TopologicalPriorLoss(prior, softmax=True)  # the background of a ring is not a ring
    assert torch.allclose(
        TopologicalPriorLoss(prior, other_act=lambda t: t.sigmoid() ** 2, reduction="none")(logits),
        expect(logits.sigmoid() ** 2),
    )


def test_connectivity_setting():
    x = torch.zeros(1, 1, 6, 6)
    x[..., 1:3, 1:3] = x[..., 3:5, 3:5] = 1.0  # two squares touching at a corner
    assert TopologicalPriorLoss(prior=(1,))(x).item() == 0
    assert TopologicalPriorLoss(prior=(1,), connectivity="face")(x).item() == 1


def test_metatensor_input():
    x = smooth_maps((2, 1, 12, 12), 9)
    loss = TopologicalPriorLoss(prior=(1, 1), reduction="none")
    assert torch.equal(torch.as_tensor(loss(MetaTensor(x))), loss(x))


def test_per_item_priors_equal_separate_calls():
    x = smooth_maps((3, 2, 20, 20), 2)
    priors = [(1, 0), (1, 1), (2, (0, None))]
    loss = TopologicalPriorLoss(reduction="none")
    batched = loss(x, prior=priors)
    for b, prior in enumerate(priors):
        separate = TopologicalPriorLoss(prior=prior, reduction="none")(x[b : b + 1])
        assert torch.equal(batched[b : b + 1], separate)
    # a (B, d) tensor collated from data dictionaries, overriding the constructor's prior
    exact = torch.tensor([[1, 0], [1, 1], [2, 2]])
    overridden = TopologicalPriorLoss(prior=(0, 0), reduction="none")(x, prior=exact)
    for b in range(3):
        expected = TopologicalPriorLoss(prior=tuple(exact[b].tolist()), reduction="none")(x[b : b + 1])
        assert torch.equal(overridden[b : b + 1], expected)


def test_only_prior_dimensions_are_computed():
    # A 3D prior of length 1 constrains only β0: a hollow shell (β2 = 1) is then free.
    x = torch.zeros(1, 1, 9, 9, 9)
    x[..., 1:8, 1:8, 1:8] = 1.0
    x[..., 3:6, 3:6, 3:6] = 0.0
    assert float(TopologicalPriorLoss(prior=(1,))(x)) == 0
    assert float(TopologicalPriorLoss(prior=(1, 0, 0))(x)) == pytest.approx(1.0)


def test_class_union_acts_on_summed_probabilities():
    logits = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    probs = logits.softmax(1)
    class_priors = {2: (1, 1), (1, 2): (1, 0)}
    multi = TopologicalPriorLoss(class_priors=class_priors, softmax=True, reduction="none")(logits)
    assert multi.shape == (2, 2, 1, 1)
    myo = TopologicalPriorLoss(prior=(1, 1), reduction="none")(probs[:, 2:3])
    union = TopologicalPriorLoss(prior=(1, 0), reduction="none")((probs[:, 1:2] + probs[:, 2:3]).clamp(max=1))
    assert torch.allclose(multi[:, :1], myo)
    assert torch.allclose(multi[:, 1:], union)
    maps, priors = TopologicalPriorLoss(class_priors=class_priors).scored_maps(probs)
    assert torch.allclose(maps[:, 1], (probs[:, 1] + probs[:, 2]).clamp(max=1))
    assert priors == [[parse_prior((1, 1)), parse_prior((1, 0))]] * 2


def test_class_union_gradient_reaches_each_member_class():
    # LV cavity (channel 1) inside a myocardium ring (channel 2): the union should be a disc.
    mask = torch.tensor(ring(17, r_in=3, r_out=6), dtype=torch.float32)
    cavity = torch.zeros(17, 17)
    cavity[6:11, 6:11] = 1 - mask[6:11, 6:11]
    logits = torch.stack([1 - mask - cavity, mask, cavity])[[0, 2, 1]] * 4
    logits = logits[None].clone().requires_grad_()
    loss = TopologicalPriorLoss(class_priors={(1, 2): (1, 0)}, softmax=True)(logits)
    loss.backward()
    assert logits.grad[:, 1].abs().sum() > 0 and logits.grad[:, 2].abs().sum() > 0


def test_constant_maps_give_zero_gradient():
    for value in (0.0, 0.3, 1.0):
        x = torch.full((2, 1, 8, 8), value, requires_grad=True)
        loss = TopologicalPriorLoss(prior=(1, 0))(x)
        loss.backward()
        assert loss.item() == pytest.approx(1 - value**2)
        assert torch.equal(x.grad, torch.zeros_like(x))


def test_gradients_only_at_critical_pixels():
    x = smooth_maps((1, 1, 24, 24), 4).requires_grad_()
    TopologicalPriorLoss(prior=(1, 1))(x).backward()
    dgm = cubical_persistence(x[0, 0].detach())
    critical = set(dgm.birth_index.tolist()) | set(dgm.death_index[dgm.death_index >= 0].tolist())
    assert set(torch.nonzero(x.grad.flatten()).flatten().tolist()) <= critical


# ---------------------------------------------------------------- optimisation on the pixels


def broken_ring_with_blobs():
    mask = ring(32, (15.5, 15.5), 7, 11)
    mask[14:18, 22:] = False  # a gap
    mask[2:5, 2:5] = mask[27:30, 3:6] = mask[2:4, 27:30] = True  # spurious blobs
    return mask


def optimise_pixels(mask, prior, steps, lr):
    prob = np.where(mask, 0.9, 0.1)
    logits = torch.tensor(np.log(prob / (1 - prob)), dtype=torch.float32)[None, None].requires_grad_()
    loss_fn = TopologicalPriorLoss(prior=prior, sigmoid=True)
    optimiser = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = loss_fn(logits)
        loss.backward()
        optimiser.step()
    return (logits.detach().sigmoid() >= 0.5)[0, 0], loss.item()


def test_pixel_optimisation_closes_the_ring_and_removes_blobs():
    mask = broken_ring_with_blobs()
    assert betti_numbers(mask) == (4, 0)
    result, loss = optimise_pixels(mask, (1, 1), steps=200, lr=0.1)
    assert betti_numbers(result) == (1, 1)
    assert loss < 0.2


def test_pixel_optimisation_3d_removes_components_and_handle():
    z, y, x = np.mgrid[:16, :16, :16].astype(float)
    mask = np.sqrt((z - 8) ** 2 + (y - 8) ** 2 + (x - 6) ** 2) <= 3.5
    mask |= np.sqrt((np.hypot(y - 8, x - 10) - 3.5) ** 2 + (z - 8) ** 2) <= 1.2  # a handle
    mask[1:3, 1:3, 1:3] = mask[13:15, 1:3, 12:14] = True  # spurious components
    assert betti_numbers(mask) == (3, 1, 0)
    result, loss = optimise_pixels(mask, (1, 0, 0), steps=120, lr=0.2)
    assert betti_numbers(result) == (1, 0, 0)
    assert loss < 0.05


def test_training_a_tiny_net_changes_its_output_topology():
    torch.manual_seed(0)
    mask = ring(32, (15.5, 15.5), 7, 11)
    mask[15:17, 22:] = False
    image = torch.tensor(mask, dtype=torch.float32)[None, None]
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3, padding=1))
    optimiser = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(100):  # teach it to copy the broken ring
        optimiser.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(net(image), image).backward()
        optimiser.step()

    def output_betti():
        with torch.no_grad():
            return betti_numbers(net(image).sigmoid()[0, 0] >= 0.5)

    assert output_betti() == (1, 0)
    loss_fn = TopologicalPriorLoss(prior=(1, 1), sigmoid=True)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(60):
        optimiser.zero_grad()
        loss_fn(net(image)).backward()
        assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in net.parameters())
        optimiser.step()
    assert output_betti() == (1, 1)


# ---------------------------------------------------------------- wrapper and trainer


def test_wrapper_is_the_weighted_sum():
    logits = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    label = (torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(6)) > 0.5).float()
    dice = DiceLoss(sigmoid=True)
    prior = TopologicalPriorLoss(prior=(1, 1), sigmoid=True)
    matching = PersistenceMatchingLoss(sigmoid=True)
    combined = TopologicalWrapperLoss(dice, prior, lambda_topo=0.3)
    assert float(combined(logits, label)) == pytest.approx(float(dice(logits, label) + 0.3 * prior(logits)))
    combined = TopologicalWrapperLoss(dice, matching, lambda_topo=0.3)
    assert float(combined(logits, label)) == pytest.approx(float(dice(logits, label) + 0.3 * matching(logits, label)))
    per_item = TopologicalWrapperLoss(dice, TopologicalPriorLoss(sigmoid=True), lambda_topo=1.0)
    priors = [(1, 0), (1, 1)]
    assert float(per_item(logits, label, prior=priors)) == pytest.approx(
        float(dice(logits, label) + TopologicalPriorLoss(sigmoid=True)(logits, prior=priors))
    )


def test_wrapper_equals_dice_plus_eq3_written_from_the_paper():
    """Value and gradients of Dice + λ·Eq. 3 on sigmoid(logits), the diagrams from gudhi directly."""
    from eq_reference import eq3

    logits = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(4), requires_grad=True)
    label = (torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(5)) > 0.5).float()
    loss_fn = TopologicalWrapperLoss(DiceLoss(sigmoid=True), TopologicalPriorLoss((1, 1), sigmoid=True), 0.3)
    ours = loss_fn(logits, label)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    probs = torch.sigmoid(logits)
    theirs = DiceLoss(sigmoid=True)(logits, label) + 0.3 * torch.stack([eq3(probs[b, 0], (1, 1)) for b in range(2)]).mean()
    (grad_theirs,) = torch.autograd.grad(theirs, logits)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-6)
    torch.testing.assert_close(grad_ours, grad_theirs)


def test_wrapper_rejects_bad_arguments():
    with pytest.raises(ValueError, match="lambda_topo"):
        TopologicalWrapperLoss(DiceLoss(), TopologicalPriorLoss((1,)), lambda_topo=-1)
    with pytest.raises(TypeError, match="topo_loss"):
        TopologicalWrapperLoss(DiceLoss(), "topo")
    combined = TopologicalWrapperLoss(DiceLoss(), TopologicalPriorLoss((1,)))
    with pytest.raises(ValueError, match="does not match input shape"):
        combined(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 9))


@pytest.mark.parametrize("spatial", [(16, 16), (8, 8, 8)])
@pytest.mark.parametrize("topo", ["prior", "matching"])
def test_supervised_trainer(spatial, topo):
    torch.manual_seed(0)
    ndim = len(spatial)
    conv = torch.nn.Conv2d if ndim == 2 else torch.nn.Conv3d
    net = torch.nn.Sequential(conv(1, 4, 3, padding=1), torch.nn.ReLU(), conv(4, 2, 3, padding=1))
    images = smooth_maps((4, 1, *spatial), 7)
    labels = (images > 0.5).float()
    data = [{"image": images[i], "label": labels[i]} for i in range(4)]
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    if topo == "prior":
        topo_loss = TopologicalPriorLoss(prior=(1,) + (0,) * (ndim - 1), softmax=True, include_background=False)
    else:
        topo_loss = PersistenceMatchingLoss(softmax=True, to_onehot_y=True, include_background=False)
    loss_function = TopologicalWrapperLoss(DiceCELoss(softmax=True, to_onehot_y=True), topo_loss, lambda_topo=0.1)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=loss_function,
    )
    before = [p.detach().clone() for p in net.parameters()]
    trainer.run()
    assert trainer.state.iteration == 2
    assert np.isfinite(float(trainer.state.output[0]["loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_prior_loss_alone_as_trainer_loss_function():
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    data = [{"image": torch.rand(1, 12, 12), "label": torch.zeros(1, 12, 12)} for _ in range(2)]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=torch.utils.data.DataLoader(data, batch_size=2),
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=TopologicalPriorLoss(prior=(1, 0), sigmoid=True),  # the label is ignored
    )
    trainer.run()
    assert np.isfinite(float(trainer.state.output[0]["loss"]))


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", ["prior", "matching", "betti matching"])
def test_losses_take_a_batch_that_monai_collated_from_metatensors(name, ndim):
    """A MONAI DataLoader stacks MetaTensors with per-item metadata (file names) into a batch that
    refuses slicing across items; each loss gives the value and the input gradient it gives on the
    plain tensors, and the gradient reaches the MetaTensor."""
    from monai.data import DataLoader, Dataset

    spatial = (12, 12) if ndim == 2 else (6, 8, 8)
    images = smooth_maps((3, 1, *spatial), 5)
    labels = (smooth_maps((3, 1, *spatial), 6) > 0.5).float()
    items = [{"image": MetaTensor(images[i], meta={"filename_or_obj": f"image_{i}.nii.gz"}),
              "label": MetaTensor(labels[i], meta={"filename_or_obj": f"label_{i}.nii.gz"})} for i in range(3)]
    batch = next(iter(DataLoader(Dataset(items), batch_size=3)))
    assert isinstance(batch["image"], MetaTensor) and batch["image"].is_batch
    loss = {"prior": lambda x, y: TopologicalPriorLoss(prior=(1,) + (0,) * (ndim - 1))(x),
            "matching": PersistenceMatchingLoss(), "betti matching": BettiMatchingLoss()}[name]
    collated = batch["image"].clone().requires_grad_()
    plain = images.clone().requires_grad_()
    got, expected = loss(collated, batch["label"]), loss(plain, labels)
    got.backward()
    expected.backward()
    assert float(got) == pytest.approx(float(expected), rel=1e-6) and float(expected) > 0
    torch.testing.assert_close(torch.as_tensor(collated.grad).as_subclass(torch.Tensor), plain.grad)


# ---------------------------------------------------------------- errors


def test_bad_priors_raise():
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match=">= 0"):
        TopologicalPriorLoss(prior=(1, -1))
    with pytest.raises(ValueError, match="min > max"):
        TopologicalPriorLoss(prior=((2, 1), 0))
    with pytest.raises(ValueError, match="only homology dimensions 0..1"):
        TopologicalPriorLoss(prior=(1, 0, 0))(x)
    with pytest.raises(ValueError, match="only homology dimensions 0..1"):
        TopologicalPriorLoss()(x, prior=[(1, 0, 0)])
    with pytest.raises(ValueError, match="no prior"):
        TopologicalPriorLoss()(x)
    with pytest.raises(ValueError, match="either prior or class_priors"):
        TopologicalPriorLoss(prior=(1,), class_priors={1: (1,)})
    with pytest.raises(ValueError, match="input has 1 channels"):
        TopologicalPriorLoss(class_priors={1: (1,)})(x)
    with pytest.raises(ValueError, match="include_background=False"):
        TopologicalPriorLoss(class_priors={(0, 1): (1,)}, include_background=False)
    with pytest.raises(ValueError, match="cannot be combined"):
        TopologicalPriorLoss(class_priors={0: (1,)})(x, prior=[(1,)])
    with pytest.raises(ValueError, match="sum above 1"):
        TopologicalPriorLoss(class_priors={(0, 1): (1,)}, sigmoid=True)(torch.full((1, 2, 8, 8), 3.0))


def test_bad_inputs_raise():
    loss = TopologicalPriorLoss(prior=(1, 1))
    x = torch.rand(1, 1, 8, 8)
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        loss(x)
    with pytest.raises(ValueError, match="NaN"):
        TopologicalPriorLoss(prior=(1, 1), sigmoid=True)(x)
    with pytest.raises(ValueError, match="sigmoid=True"):
        loss(torch.randn(1, 1, 8, 8) * 5)
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\)"):
        loss(torch.rand(8, 8))
    with pytest.raises(TypeError, match="floating-point"):
        loss(torch.ones(1, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="Incompatible"):
        TopologicalPriorLoss(prior=(1,), sigmoid=True, softmax=True)
    with pytest.raises(ValueError, match="connectivity"):
        TopologicalPriorLoss(prior=(1,), connectivity="diagonal")
    with pytest.raises(ValueError, match="reduction must be one of"):
        TopologicalPriorLoss(prior=(1,), reduction="max")


def test_downsample_scores_the_max_pooled_map_and_reaches_full_resolution():
    import torch.nn.functional as F

    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(5), requires_grad=True)
    pooled = F.max_pool2d(x.detach(), 2)  # independent reference: torch's own pooling
    fast = TopologicalPriorLoss(prior=(1, 1), downsample=2)(x)
    exact_on_pooled = TopologicalPriorLoss(prior=(1, 1))(pooled)
    assert torch.allclose(fast, exact_on_pooled)
    fast.backward()
    assert x.grad.shape == x.shape and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="downsample"):
        TopologicalPriorLoss(prior=(1, 1), downsample=0)
    with pytest.raises(ValueError, match="downsample_mode"):
        TopologicalPriorLoss(prior=(1, 1), downsample=2, downsample_mode="median")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [({"sigmoid": "true"}, TypeError, "sigmoid"), ({"sigmoid": 1}, TypeError, "sigmoid"),
     ({"include_background": "no"}, TypeError, "include_background"), ({"num_workers": "2"}, TypeError, "num_workers"),
     ({"num_workers": 0}, ValueError, "num_workers")],
)
def test_loss_flags_are_checked_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        TopologicalPriorLoss(prior=(1, 1), **kwargs)
