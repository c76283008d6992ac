"""The label-free field of view: LocalisedCrop(d) finds the organ a network segments and crops a box around it.

References are independent of the code: ring centres drawn here, scipy's centre of mass, MONAI's own Invertd.
"""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, Spacingd
from scipy import ndimage

from monai_topo.transforms import LocalisedCrop, LocalisedCropd, locate_foreground


def ring(shape, centre, inner, outer) -> np.ndarray:
    yy, xx = np.indices(shape)
    r = np.hypot(yy - centre[0], xx - centre[1])
    return (r >= inner) & (r <= outer)


class Logits(torch.nn.Module):
    """An 'oracle network': logits +8 where the image is above 0.5, -8 elsewhere (one parameter, unused)."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.where(x > 0.5, 8.0, -8.0)


def test_locate_foreground_picks_the_broken_ring_over_distractors():
    mask = ring((128, 128), (70, 50), 12, 18)
    mask[:, 48:53] = False  # broken into two halves
    mask[100:104, 110:114] = True  # a small false positive
    probs = np.where(mask, 0.9, 0.05)
    expected = ndimage.center_of_mass(ring((128, 128), (70, 50), 12, 18))
    centre = locate_foreground(probs)
    assert np.abs(centre - np.asarray(expected)).max() <= 1
    # without merging, the larger half wins alone: its centre is off the ring's
    assert np.abs(locate_foreground(probs, merge_radius=0) - np.asarray(expected)).max() > 3
    assert locate_foreground(np.full((16, 16), 0.2)) is None


def test_localised_crop_and_invert_through_spacing():
    """Spacing, crop around the ring the network finds, then MONAI's Invertd: the prediction lands back in place."""
    mask = ring((120, 100), (30, 70), 8, 14)
    image = MetaTensor(torch.as_tensor(mask, dtype=torch.float32)[None], affine=torch.diag(torch.tensor([1.0, 1.0, 1.0, 1.0])))
    preprocessing = Compose([
        Spacingd("image", pixdim=(0.5, 0.5), mode="nearest"),
        LocalisedCropd("image", Logits(), roi_size=[64, 64]),
    ])
    data = preprocessing({"image": image})
    assert data["image"].shape == (1, 64, 64)
    # the whole ring (on the 0.5 mm grid) is inside the box, centred within a pixel
    cropped = data["image"][0].numpy() > 0.5
    assert cropped.sum() == (Spacingd("image", pixdim=(0.5, 0.5), mode="nearest")({"image": image})["image"] > 0.5).sum()
    assert np.abs(np.asarray(ndimage.center_of_mass(cropped)) - 31.5).max() <= 1.0
    data["pred"] = MetaTensor(data["image"].as_tensor().clone(), meta=data["image"].meta)
    back = Invertd("pred", preprocessing, orig_keys="image", nearest_interp=True)(data)["pred"]
    assert back.shape == (1, 120, 100)
    assert np.array_equal(back[0].numpy() > 0.5, mask)


def test_localised_crop_of_a_stack_and_of_an_empty_image():
    stack = torch.zeros(1, 80, 80, 4)
    stack[0, :, :, 1:3] = torch.as_tensor(ring((80, 80), (20, 60), 5, 9), dtype=torch.float32)[..., None]
    crop = LocalisedCrop(Logits(), roi_size=[32, 32])
    start, end = crop.compute_bounding_box(stack)
    assert start.tolist() == [4, 44, 0] and end.tolist() == [36, 76, 4]
    assert crop(stack).shape == (1, 32, 32, 4)
    start, end = crop.compute_bounding_box(torch.zeros(1, 80, 60))  # nothing found: the image centre
    assert start.tolist() == [24, 14] and end.tolist() == [56, 46]


@pytest.mark.parametrize("kwargs, match", [
    ({"roi_size": [0, 32]}, "roi_size"),
    ({"roi_size": [32, 32], "threshold": 1.5}, "threshold"),
    ({"roi_size": [32, 32], "merge_radius": -1}, "merge_radius"),
])
def test_localised_crop_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LocalisedCrop(Logits(), **kwargs)
    with pytest.raises(TypeError, match="network"):
        LocalisedCrop("unet", roi_size=[32, 32])
    with pytest.raises(ValueError, match="spatial dimensions"):
        LocalisedCrop(Logits(), roi_size=[32, 32])(torch.zeros(1, 8, 8, 8, 8))
