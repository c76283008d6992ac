"""Label-free field of view: crop a fixed box around the organ that a network finds in the whole image.

A first, coarse pass of a segmentation network over the whole image (or stack) gives a probability
map; the group of foreground pixels with the largest probability mass is taken as the organ, and a box
of ``roi_size`` centred on it is cropped, so the fine pass (and the Eq. 5 refinement) sees only the
organ's neighbourhood, whatever the scanner's field of view. The crop is a MONAI ``CropForeground``
with its own bounding box, hence invertible: ``Invertd`` pads the prediction back to the input's grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.inferers import SimpleInferer
from monai.networks import eval_mode
from monai.transforms import CropForeground, CropForegroundd
from monai.utils import ensure_tuple
from scipy import ndimage


def locate_foreground(
    probs, threshold: float = 0.5, merge_radius: int = 8, centre_sigma: float | None = None
) -> np.ndarray | None:
    """Centre of the foreground group with the largest probability mass, or None without foreground.

    Pixels with ``probs >= threshold`` closer than about ``merge_radius`` pixels form one group (a
    broken ring stays one organ); the group whose probabilities sum highest wins over small false
    positives elsewhere, and its bounding-box centre is returned. With ``centre_sigma``, each group's
    mass is weighted by ``exp(-d² / (2 centre_sigma²))``, ``d`` the distance of its centre of mass from
    the image centre: a prior that the organ lies near the middle of the field of view (as a cardiac
    short-axis series is planned on the heart), which outweighs a larger false positive far out.

    Parameters
    ----------
    probs : array-like, shape (*spatial)
        Foreground probabilities.
    threshold : float
        Probability at which a pixel is foreground.
    merge_radius : int
        Dilation (in pixels, full connectivity) that joins nearby pieces into one group; 0 joins none.
    centre_sigma : float, optional
        Width in pixels of the prior towards the image centre; None: no prior.

    Examples
    --------
    >>> import numpy as np
    >>> from monai_topo.transforms.localise import locate_foreground
    >>> probs = np.zeros((32, 32)); probs[2:4, 2:4] = 0.9; probs[24:30, 20:28] = 0.8
    >>> locate_foreground(probs).tolist()  # the larger piece
    [27, 24]
    >>> probs[14:18, 14:18] = 0.9; locate_foreground(probs, merge_radius=0, centre_sigma=4.0).tolist()  # the central one
    [16, 16]
    >>> locate_foreground(np.zeros((8, 8))) is None
    True
    """
    probs = np.asarray(probs, dtype=np.float64)
    mask = probs >= threshold
    if not mask.any():
        return None
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    grouped = ndimage.binary_dilation(mask, structure, iterations=merge_radius) if merge_radius > 0 else mask
    labels, count = ndimage.label(grouped, structure)
    labels = np.where(mask, labels, 0)
    index = np.arange(1, count + 1)
    mass = ndimage.sum_labels(probs, labels, index=index)
    if centre_sigma is not None:
        offsets = np.asarray(ndimage.center_of_mass(probs, labels, index)) - (np.asarray(probs.shape) - 1) / 2
        mass = mass * np.exp(-(offsets**2).sum(-1) / (2 * float(centre_sigma) ** 2))
    coords = np.argwhere(labels == int(np.argmax(mass)) + 1)
    return (coords.min(0) + coords.max(0) + 1) // 2


class LocalisedCrop(CropForeground):
    """Crop a ``roi_size`` box centred on the organ that ``network`` segments in the whole image.

    The network (logits, channel first) runs once over the whole item through ``inferer`` (e.g. a
    sliding window); a stack with one dimension more than ``roi_size`` (a 3D stack for a 2D network) is
    run slice by slice along its last axis, the slices' probabilities averaged, and the box spans the
    whole stack along that axis. Without foreground the box is centred on the image. A box reaching
    past the border is padded (``mode``); :meth:`inverse` undoes crop and padding (MONAI ``Invertd``).
    Load the weights into ``network`` before the first call (a bundle's ``CheckpointLoader`` does, at the
    evaluator's start), and run it in the main process (``num_workers=0``) when the network is on a GPU.

    Parameters
    ----------
    network : torch.nn.Module
        Segmentation network returning logits ``(1, C, *spatial)``; run in eval mode, without gradients,
        on its own device.
    roi_size : sequence of int
        Size of the box in the network's spatial dimensions, e.g. ``[96, 96]``.
    inferer : callable, optional
        ``inferer(inputs, network)``, e.g. a MONAI ``SlidingWindowInferer``; default ``SimpleInferer()``.
    sigmoid : bool
        Sigmoid on the logits (else softmax over the channels).
    channel : int
        Channel of the activated output that holds the organ.
    threshold, merge_radius, centre_sigma
        As in :func:`locate_foreground` (on the localised dimensions of the image).
    mode, pad_kwargs
        Padding of a box past the border, as in ``CropForeground``.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.transforms import LocalisedCrop
    >>> image = torch.full((1, 64, 64), -4.0); image[0, 10:20, 30:40] = 4.0
    >>> crop = LocalisedCrop(torch.nn.Identity(), roi_size=[16, 16])  # the image as its own logits
    >>> [b.tolist() for b in crop.compute_bounding_box(image)]
    [[7, 27], [23, 43]]
    >>> crop(image).shape
    torch.Size([1, 16, 16])
    """

    def __init__(
        self,
        network: torch.nn.Module,
        roi_size: Sequence[int],
        inferer: Callable | None = None,
        sigmoid: bool = True,
        channel: int = 0,
        threshold: float = 0.5,
        merge_radius: int = 8,
        centre_sigma: float | None = None,
        mode: str = "constant",
        lazy: bool = False,
        **pad_kwargs,
    ) -> None:
        super().__init__(mode=mode, lazy=lazy, **pad_kwargs)
        if not isinstance(network, torch.nn.Module):
            raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}.")
        roi_size = ensure_tuple(roi_size)
        if not 1 <= len(roi_size) <= 3 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in roi_size):
            raise ValueError(f"roi_size must be 1 to 3 positive ints (the network's spatial size), got roi_size={roi_size!r}.")
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be a probability in [0, 1], got threshold={threshold!r}.")
        if isinstance(merge_radius, bool) or not isinstance(merge_radius, (int, np.integer)) or merge_radius < 0:
            raise ValueError(f"merge_radius must be an int >= 0 (pixels), got merge_radius={merge_radius!r}.")
        if centre_sigma is not None and not centre_sigma > 0:
            raise ValueError(f"centre_sigma must be None or a width > 0 in pixels, got centre_sigma={centre_sigma!r}.")
        self.network = network
        self.roi_size = np.asarray(roi_size, dtype=int)
        self.inferer = SimpleInferer() if inferer is None else inferer
        self.sigmoid, self.channel = bool(sigmoid), int(channel)
        self.threshold, self.merge_radius, self.centre_sigma = float(threshold), int(merge_radius), centre_sigma

    def probability_map(self, img: torch.Tensor) -> np.ndarray:
        """The organ's probability over the localised dimensions of ``img`` (C, *spatial)."""
        dims = len(self.roi_size)
        if img.ndim - 1 not in (dims, dims + 1):
            raise ValueError(
                f"the image has {img.ndim - 1} spatial dimensions (shape {tuple(img.shape)}), roi_size {dims}: "
                f"give a {dims}D item, or a stack of them along the last axis."
            )
        param = next(self.network.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.as_tensor(img).as_subclass(torch.Tensor).to(device=device, dtype=torch.float32)
        parts = x.unbind(-1) if x.ndim - 1 > dims else [x]
        total = 0.0
        with eval_mode(self.network), torch.no_grad():
            for part in parts:
                logits = self.inferer(part[None], self.network)[0]
                probs = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, 0)
                total = total + probs[self.channel].float().cpu().numpy()
        return total / len(parts)

    def compute_bounding_box(self, img: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Start and end of the ``roi_size`` box around the located organ (the whole extent of a stack's last axis)."""
        shape = np.asarray(img.peek_pending_shape() if hasattr(img, "peek_pending_shape") else img.shape[1:])
        centre = locate_foreground(self.probability_map(img), self.threshold, self.merge_radius, self.centre_sigma)
        dims = len(self.roi_size)
        if centre is None:
            centre = shape[:dims] // 2
        start = np.asarray(centre) - self.roi_size // 2
        end = start + self.roi_size
        if len(shape) > dims:  # a stack: every slice
            start, end = np.append(start, 0), np.append(end, shape[dims])
        return start.astype(int), end.astype(int)


class LocalisedCropd(CropForegroundd):
    """Dictionary twin of :class:`LocalisedCrop`: the box is located on ``source_key`` and cropped from every key.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to crop (e.g. ``"image"``, or ``["image", "label"]``).
    network, roi_size
        As in :class:`LocalisedCrop`.
    source_key : str
        Key of the image the network localises the organ on.
    mode : str or sequence of str
        Padding mode per key of a box past the border.
    start_coord_key, end_coord_key : str, optional
        Keys where the box is recorded (None: not recorded).
    localise_args
        ``inferer``, ``sigmoid``, ``channel``, ``threshold``, ``merge_radius``, ``centre_sigma`` of
        :class:`LocalisedCrop`.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.transforms import LocalisedCropd
    >>> image = torch.full((1, 64, 64, 3), -4.0); image[0, 56:64, 8:16] = 4.0  # a stack of three slices
    >>> crop = LocalisedCropd("image", torch.nn.Identity(), roi_size=[16, 16])
    >>> out = crop({"image": image})
    >>> out["image"].shape, out["foreground_start_coord"].tolist()
    (torch.Size([1, 16, 16, 3]), [52, 4, 0])
    >>> out["image"][0, -1].abs().max().item()  # its last rows lie past the border: padded
    0.0
    >>> crop.inverse(out)["image"].shape
    torch.Size([1, 64, 64, 3])
    """

    def __init__(
        self,
        keys,
        network: torch.nn.Module,
        roi_size: Sequence[int],
        source_key: str = "image",
        mode="constant",
        start_coord_key: str | None = "foreground_start_coord",
        end_coord_key: str | None = "foreground_end_coord",
        allow_missing_keys: bool = False,
        lazy: bool = False,
        **localise_args,
    ) -> None:
        super().__init__(keys, source_key=source_key, mode=mode, start_coord_key=start_coord_key,
                         end_coord_key=end_coord_key, allow_missing_keys=allow_missing_keys, lazy=lazy)
        self.cropper = LocalisedCrop(network, roi_size, lazy=lazy, **localise_args)
