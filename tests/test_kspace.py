"""k-space line corruption, checked against an independent numpy implementation of the paper's recipe."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from monai_topo.transforms import (
    KSpaceLineCorruption,
    KSpaceLineCorruptiond,
    apply_kspace_line_mask,
    corrupt_kspace_lines,
    kspace_line_mask,
)


def numpy_reference(image2d, zeroed_rows, zeroed_cols):
    """The recipe of Clough et al. written out with numpy for one 2D image."""
    k = np.fft.fftshift(np.fft.fft2(image2d))
    k[zeroed_rows, :] = 0
    k[:, zeroed_cols] = 0
    magnitude = np.abs(np.fft.ifft2(np.fft.ifftshift(k)))
    return (magnitude - magnitude.min()) / (magnitude.max() - magnitude.min())


def zeroed_lines(mask):
    return np.flatnonzero(~mask.any(axis=1)), np.flatnonzero(~mask.any(axis=0))


@pytest.fixture
def image():
    x = np.random.default_rng(0).random((1, 40, 36))
    return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)


def test_m_zero_returns_the_image(image):
    out = corrupt_kspace_lines(image, 0, 0, rng=0)
    np.testing.assert_allclose(out, image, atol=1e-6)
    assert out.dtype == np.float32


@pytest.mark.parametrize("m_rows,m_cols,keep_centre", [(10, 0, 8), (6, 6, 0), (32, 28, 8), (0, 5, 4)])
def test_matches_numpy_reference_and_zeroes_exactly_m_lines(image, m_rows, m_cols, keep_centre):
    mask = kspace_line_mask(image.shape[1:], m_rows, m_cols, keep_centre, rng=3)
    rows, cols = zeroed_lines(mask)
    assert len(rows) == m_rows and len(cols) == m_cols
    out = apply_kspace_line_mask(image, mask)
    np.testing.assert_allclose(out[0], numpy_reference(image[0].astype(float), rows, cols), atol=1e-5)
    assert out.min() == 0 and out.max() == 1


def test_centre_lines_are_never_zeroed():
    for seed in range(20):
        mask = kspace_line_mask((80, 80), 72, 72, keep_centre=8, rng=seed)
        rows, cols = zeroed_lines(mask)
        centre = set(range(36, 44))  # DC at 40 after fftshift, the middle 8 lines around it
        assert centre.isdisjoint(rows) and centre.isdisjoint(cols)
        assert len(rows) == len(cols) == 72


def test_kept_centre_lines_are_untouched_in_kspace():
    """An image whose spectrum lies in the kept central lines goes through even with every other line zeroed."""
    y, x = np.mgrid[:32, :32] * (2 * np.pi / 32)
    low_frequency = 0.5 + 0.25 * np.cos(y) + 0.2 * np.sin(2 * x) + 0.05 * np.cos(3 * y + x)
    low_frequency = (low_frequency - low_frequency.min()) / (low_frequency.max() - low_frequency.min())
    out = corrupt_kspace_lines(low_frequency[None], m_rows=24, m_cols=24, keep_centre=8, rng=0)
    np.testing.assert_allclose(out[0], low_frequency, atol=1e-5)
    # and without the kept centre the same corruption destroys it
    out = corrupt_kspace_lines(low_frequency[None], m_rows=24, m_cols=24, keep_centre=0, rng=0)
    assert np.abs(out[0] - low_frequency).max() > 0.1


def test_output_range_type_and_3d():
    volume = torch.from_numpy(np.random.default_rng(1).random((2, 24, 20, 5)))
    out = corrupt_kspace_lines(volume, 8, 3, keep_centre=4, rng=0)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == volume.shape
    for channel in out:
        assert channel.min() == 0 and channel.max() == 1
    # every (H, W) slice along D loses the same lines; each channel is rescaled as a whole
    mask = kspace_line_mask((24, 20), 8, 3, keep_centre=4, rng=0)
    hw = (0, 1)
    k = np.fft.fftshift(np.fft.fft2(volume[1].numpy(), axes=hw), axes=hw) * mask[..., None]
    expected = np.abs(np.fft.ifft2(np.fft.ifftshift(k, axes=hw), axes=hw))
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(out[1].numpy(), expected, atol=1e-5)


def test_all_lines_zeroed_gives_zeros():
    out = corrupt_kspace_lines(np.random.default_rng(0).random((1, 8, 8)), 8, keep_centre=0, rng=0)
    assert not out.any()


def test_seeded_determinism(image):
    a = corrupt_kspace_lines(image, 10, 4, rng=7)
    b = corrupt_kspace_lines(image, 10, 4, rng=np.random.default_rng(7))
    c = corrupt_kspace_lines(image, 10, 4, rng=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    t1, t2 = KSpaceLineCorruption(10, 4), KSpaceLineCorruption(10, 4)
    t1.set_random_state(5)
    t2.set_random_state(5)
    torch.testing.assert_close(t1(image), t2(image))


@pytest.mark.parametrize("kwargs,name", [
    ({"m_rows": -1}, "m_rows"),
    ({"m_rows": 33}, "m_rows"),  # 40 rows less the 8 central ones leaves 32
    ({"m_rows": 0, "m_cols": 29}, "m_cols"),
    ({"m_rows": 2.5}, "m_rows"),
    ({"m_rows": 1, "keep_centre": -2}, "keep_centre"),
    ({"m_rows": 1, "keep_centre": 41}, "keep_centre"),
])
def test_bad_parameters_are_named(image, kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        corrupt_kspace_lines(image, **kwargs)


def test_bad_images_are_rejected(image):
    with pytest.raises(ValueError, match="channel-first"):
        corrupt_kspace_lines(image[0], 2)
    bad = image.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        corrupt_kspace_lines(bad, 2)
    with pytest.raises(ValueError, match="mask shape"):
        apply_kspace_line_mask(image, np.ones((4, 4), bool))


def test_array_transform_keeps_metadata_and_records_mask(image):
    affine = torch.diag(torch.tensor([1.5, 1.5, 1.0, 1.0], dtype=torch.float64))
    corrupt = KSpaceLineCorruption(12, keep_centre=8)
    corrupt.set_random_state(0)
    out = corrupt(MetaTensor(torch.from_numpy(image), affine=affine))
    assert isinstance(out, MetaTensor)
    torch.testing.assert_close(out.affine, affine)
    rows, cols = zeroed_lines(corrupt.mask)
    assert len(rows) == 12 and len(cols) == 0
    np.testing.assert_allclose(out[0].numpy(), numpy_reference(image[0].astype(float), rows, cols), atol=1e-5)


def test_prob_zero_leaves_image_untouched(image):
    out = KSpaceLineCorruption(12, prob=0.0)(image)
    np.testing.assert_array_equal(np.asarray(out), image)
    out = KSpaceLineCorruptiond("image", 12, prob=0.0)({"image": image})
    np.testing.assert_array_equal(np.asarray(out["image"]), image)


def test_dictionary_transform_shares_lines_and_skips_other_keys(image):
    label = (image > 0.5).astype(np.float32)
    transform = Compose([KSpaceLineCorruptiond(["image", "image2"], m_rows=6, m_cols=6, keep_centre=0)])
    transform.set_random_state(3)
    out = transform({"image": image, "image2": image.copy(), "label": label})
    torch.testing.assert_close(out["image"], out["image2"])
    np.testing.assert_array_equal(out["label"], label)
    assert out["image"].min() == 0 and out["image"].max() == 1
    again = Compose([KSpaceLineCorruptiond(["image", "image2"], 6, 6, keep_centre=0)]).set_random_state(3)
    torch.testing.assert_close(again({"image": image, "image2": image})["image"], out["image"])
