"""Tests of the persistence-diagram matching loss (Hu et al.) against gudhi's Wasserstein distance."""

import numpy as np
import pytest
import torch
from gudhi.wasserstein import wasserstein_distance  # needs POT (`pip install pot`)
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

from monai_topo.losses import PersistenceMatchingLoss, matching_loss_from_diagrams, wasserstein2_squared
from monai_topo.losses.matching import split_into_patches
from monai_topo.ph import betti_numbers, cubical_persistence
from shapes import ring


def gudhi_w2_squared(a: np.ndarray, b: np.ndarray) -> float:
    # gudhi expects sub-level points (birth <= death): negate ours; distances are unchanged.
    return wasserstein_distance(-a, -b, order=2, internal_p=2) ** 2


def random_points(rng, n):
    birth = rng.random(n)
    # a mix of long bars and many short ones near the diagonal, as on real diagrams
    death = birth * rng.random(n) ** rng.choice([0.1, 1.0, 10.0])
    return np.stack([birth, death], 1)


def smooth(shape, seed, sigma=1.5):
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return torch.tensor((x - x.min()) / (x.max() - x.min()))


@given(seed=st.integers(0, 2**32 - 1), sizes=st.tuples(st.integers(0, 30), st.integers(0, 30)), kind=st.integers(0, 2))
def test_wasserstein_equals_gudhi_on_random_diagrams(seed, sizes, kind):
    rng = np.random.default_rng(seed)
    a, b = random_points(rng, sizes[0]), random_points(rng, sizes[1])
    if kind == 1:  # diagram of a binary mask: every point is (1, 0)
        b = np.tile([1.0, 0.0], (sizes[1] % 6, 1))
    if kind == 2:
        a, b = b, a
    ours = wasserstein2_squared(torch.tensor(a), torch.tensor(b)).item()
    assert ours == pytest.approx(gudhi_w2_squared(a, b), abs=1e-10)


@pytest.mark.parametrize("shape", [(20, 20), (7, 8, 9)])
@pytest.mark.parametrize("binary_target", [False, True])
def test_loss_equals_gudhi_summed_over_dimensions(shape, binary_target):
    for seed in range(3):
        x, y = smooth(shape, seed), smooth(shape, 100 + seed)
        if binary_target:
            y = (y > 0.5).double()
        dx, dy = cubical_persistence(x).to_numpy(), cubical_persistence(y).to_numpy()
        expected = sum(
            gudhi_w2_squared(dx[dx[:, 0] == k, 1:], dy[dy[:, 0] == k, 1:]) for k in range(len(shape))
        )
        loss = PersistenceMatchingLoss()(x[None, None], y[None, None])
        assert loss.item() == pytest.approx(expected, abs=1e-10)


def test_zero_when_diagrams_agree():
    x = smooth((16, 16), 1)[None, None]
    assert PersistenceMatchingLoss()(x, x).item() == 0
    # different pixels, same diagram: a ring and the same ring moved
    a = torch.tensor(ring(24, (9, 9), 3, 6), dtype=torch.float32)[None, None]
    b = torch.roll(a, shifts=(4, 5), dims=(2, 3))
    assert PersistenceMatchingLoss()(a, b).item() == 0
    assert PersistenceMatchingLoss()(a, torch.zeros_like(a)).item() == pytest.approx(0.5 + 0.5)


def test_hand_example():
    # prediction: one component (0.8, 0) and one hole (0.8, 0.3); target: a disc (1, 0)
    x = torch.zeros(1, 1, 9, 9)
    x[..., 2:7, 2:7] = 0.8
    x[..., 4, 4] = 0.3
    y = torch.zeros(1, 1, 9, 9)
    y[..., 2:7, 2:7] = 1.0
    expected = (0.2**2) + (0.5**2) / 2  # component matched; hole to the diagonal
    assert PersistenceMatchingLoss()(x, y).item() == pytest.approx(expected)


def test_gradient_reaches_prediction_only():
    x = smooth((1, 1, 16, 16), 3).float().requires_grad_()
    y = (smooth((1, 1, 16, 16), 4) > 0.5).float().requires_grad_()
    PersistenceMatchingLoss()(x, y).backward()
    assert x.grad.abs().sum() > 0
    assert y.grad is None


def test_constant_prediction_gives_zero_gradient():
    x = torch.full((1, 1, 8, 8), 0.4, requires_grad=True)
    y = torch.zeros(1, 1, 8, 8)
    y[..., 2:5, 2:5] = 1
    loss = PersistenceMatchingLoss()(x, y)
    loss.backward()
    assert loss.item() == pytest.approx(0.6**2)
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_pixel_optimisation_reaches_the_target_topology():
    target = torch.tensor(ring(24, (11.5, 11.5), 4, 8), dtype=torch.float32)[None, None]
    broken = target.clone()
    broken[..., 10:14, 15:] = 0  # a gap
    broken[..., 1:3, 1:3] = 1  # a blob
    logits = broken * 4 - 2
    # A gap of probability 0.38 leaves a hole bar long enough to be matched with the target's hole
    # (a gap at ~0 makes a near-diagonal point that the matching sends to the diagonal: no pull).
    logits[..., 10:14, 15:] = -0.5
    logits.requires_grad_()
    loss_fn = PersistenceMatchingLoss(sigmoid=True)
    optimiser = torch.optim.Adam([logits], lr=0.2)
    for _ in range(80):
        optimiser.zero_grad()
        loss_fn(logits, target).backward()
        optimiser.step()
    assert betti_numbers(broken[0, 0]) == (2, 0)
    assert betti_numbers(logits.detach().sigmoid()[0, 0] >= 0.5) == (1, 1)


def test_split_into_patches_keeps_each_patch_diagram():
    x = smooth((2, 3, 10, 13), 5)
    patches = split_into_patches(x, (4, 5))  # 3 x 3 patches, the last row/column padded
    assert patches.shape == (2, 3 * 9, 4, 5)
    for i, row in enumerate(range(0, 10, 4)):
        for j, col in enumerate(range(0, 13, 5)):
            crop = x[1, 2, row : row + 4, col : col + 5]
            padded = patches[1, 2 * 9 + 3 * i + j]
            assert torch.equal(padded[: crop.shape[0], : crop.shape[1]], crop)
            a, b = cubical_persistence(crop).to_numpy(), cubical_persistence(padded).to_numpy()
            assert np.allclose(a[np.lexsort(a.T)], b[np.lexsort(b.T)])


def test_patch_loss_is_the_sum_over_tiles():
    x, y = smooth((1, 1, 11, 14), 6), (smooth((1, 1, 11, 14), 7) > 0.5).double()
    loss = PersistenceMatchingLoss(patch_size=(5, 6))(x, y)
    tiles = [
        matching_loss_from_diagrams(
            cubical_persistence(x[0, 0, r : r + 5, c : c + 6]), cubical_persistence(y[0, 0, r : r + 5, c : c + 6])
        )
        for r in range(0, 11, 5)
        for c in range(0, 14, 6)
    ]
    assert loss.item() == pytest.approx(sum(t.item() for t in tiles))
    whole = PersistenceMatchingLoss()(x, y)
    assert PersistenceMatchingLoss(patch_size=65)(x, y).item() == pytest.approx(whole.item())
    volume, target = smooth((1, 1, 6, 6, 6), 8), (smooth((1, 1, 6, 6, 6), 9) > 0.5).double()
    assert PersistenceMatchingLoss(patch_size=3, reduction="none")(volume, target).shape == (1, 1, 1, 1, 1)


def test_multiclass_reduction_and_onehot():
    logits = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 3, (2, 1, 12, 12), generator=torch.Generator().manual_seed(1))
    onehot = torch.nn.functional.one_hot(labels[:, 0], 3).permute(0, 3, 1, 2).float()
    loss = PersistenceMatchingLoss(softmax=True, to_onehot_y=True, reduction="none")
    per_channel = loss(logits, labels)
    assert per_channel.shape == (2, 3, 1, 1)
    assert torch.allclose(per_channel, PersistenceMatchingLoss(reduction="none")(logits.softmax(1), onehot))
    no_bg = PersistenceMatchingLoss(softmax=True, to_onehot_y=True, include_background=False, reduction="none")
    assert torch.allclose(no_bg(logits, labels), per_channel[:, 1:])
    summed = PersistenceMatchingLoss(softmax=True, to_onehot_y=True, reduction="sum")(logits, labels)
    assert summed.item() == pytest.approx(per_channel.sum().item())


def test_bad_inputs_raise():
    loss = PersistenceMatchingLoss()
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="does not match input shape"):
        loss(x, torch.rand(2, 1, 8, 9))
    with pytest.raises(ValueError, match="does not match input shape"):
        loss(torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="to_onehot_y=True needs"):
        PersistenceMatchingLoss(to_onehot_y=True)(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="input contains NaN"):
        loss(nan, x)
    with pytest.raises(ValueError, match="target contains NaN"):
        loss(x, nan)
    with pytest.raises(ValueError, match=r"target must hold probabilities in \[0, 1\]"):
        loss(x, x * 3)
    with pytest.raises(TypeError, match="target must be a torch.Tensor"):
        loss(x, x.numpy())
    for bad in (0, (4, 4, 4), (4, -1), 2.5):
        with pytest.raises(ValueError, match="patch_size"):
            PersistenceMatchingLoss(patch_size=bad)(x, x)
    with pytest.raises(ValueError, match="diagrams cover different homology dimensions"):
        matching_loss_from_diagrams(cubical_persistence(x[0, 0]), cubical_persistence(x[0, 0], maxdim=0))
