"""A MONAI image reader backed by SimpleITK, for the formats nibabel does not read (.mha, .nrrd, ...)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from monai.config import PathLike
from monai.data import ImageReader, MetaTensor
from monai.data.image_reader import _copy_compatible_dict, _stack_images
from monai.data.utils import is_supported_format, orientation_ras_lps
from monai.transforms import Compose, LoadImage, LoadImaged
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

SIMPLEITK_SUFFIXES = ("mha", "mhd", "nrrd", "nhdr", "gipl", "gipl.gz", "hdr", "img", "img.gz", "nia", "vtk", "dcm")
"""Suffixes routed to :class:`SimpleITKReader`. NIfTI is left to MONAI's ``NibabelReader``."""


class SimpleITKReader(ImageReader):
    """Load MetaImage, NRRD and other SimpleITK formats the way MONAI's ``ITKReader`` does.

    MONAI's own ``ITKReader`` needs the ``itk`` package; SimpleITK is lighter and already a
    dependency. The array comes out in ITK index order ``(x, y[, z])`` (channels last for
    vector images) and the affine is converted from ITK's LPS to RAS, both as ``ITKReader`` and
    ``NibabelReader`` give them, so a NIfTI and an MHA copy of one image load identically.

    Parameters
    ----------
    suffixes : sequence of str
        File suffixes :meth:`verify_suffix` accepts (default :data:`SIMPLEITK_SUFFIXES`).

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np, SimpleITK as sitk
    >>> from monai_topo.inference.readers import SimpleITKReader
    >>> image = sitk.GetImageFromArray(np.arange(6, dtype=np.int16).reshape(2, 3))  # (y, x)
    >>> image.SetSpacing((0.5, 2.0))
    >>> path = os.path.join(tempfile.mkdtemp(), "a.mha")
    >>> sitk.WriteImage(image, path)
    >>> reader = SimpleITKReader()
    >>> data, meta = reader.get_data(reader.read(path))
    >>> data.shape, meta["affine"][:2, :2].tolist()
    ((3, 2), [[-0.5, 0.0], [0.0, -2.0]])
    """

    def __init__(self, suffixes: Sequence[str] = SIMPLEITK_SUFFIXES) -> None:
        super().__init__()
        self.suffixes = tuple(suffixes)

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """Whether every file in ``filename`` has one of the reader's suffixes."""
        return is_supported_format(filename, self.suffixes)

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs) -> sitk.Image | list[sitk.Image]:
        """Read one file, or several to be stacked as channels, with ``SimpleITK.ReadImage``."""
        filenames = ensure_tuple(data)
        images = [sitk.ReadImage(os.fspath(name), **kwargs) for name in filenames]
        return images if len(filenames) > 1 else images[0]

    def get_data(self, img: sitk.Image | Sequence[sitk.Image]) -> tuple[np.ndarray, dict]:
        """Array in ITK index order and MONAI metadata (``affine``, ``spatial_shape``, ...)."""
        arrays: list[np.ndarray] = []
        compatible_meta: dict = {}
        # ensure_tuple would iterate over a SimpleITK image's pixels.
        for image in img if isinstance(img, (list, tuple)) else [img]:
            header = {key: image.GetMetaData(key) for key in image.GetMetaDataKeys() if not key.startswith("ITK_")}
            header["spacing"] = np.asarray(image.GetSpacing())
            header[MetaKeys.ORIGINAL_AFFINE] = _ras_affine(image)
            header[MetaKeys.AFFINE] = header[MetaKeys.ORIGINAL_AFFINE].copy()
            header[MetaKeys.SPACE] = SpaceKeys.RAS
            header[MetaKeys.SPATIAL_SHAPE] = np.asarray(image.GetSize()[:3])
            # SimpleITK indexes arrays (z, y, x[, c]); MONAI's readers give (x, y, z[, c]).
            array = sitk.GetArrayFromImage(image).T
            if image.GetNumberOfComponentsPerPixel() > 1:
                array = np.moveaxis(array, 0, -1)
                header[MetaKeys.ORIGINAL_CHANNEL_DIM] = -1
            else:
                header[MetaKeys.ORIGINAL_CHANNEL_DIM] = float("nan")
            arrays.append(np.ascontiguousarray(array))
            _copy_compatible_dict(header, compatible_meta)
        return _stack_images(arrays, compatible_meta), compatible_meta


def _ras_affine(image: sitk.Image) -> np.ndarray:
    """The image's index-to-world matrix (direction · spacing, origin), converted from LPS to RAS."""
    rank = min(image.GetDimension(), 3)
    direction = np.asarray(image.GetDirection()).reshape(image.GetDimension(), image.GetDimension())
    affine = np.eye(rank + 1)
    affine[:rank, :rank] = direction[:rank, :rank] @ np.diag(image.GetSpacing()[:rank])
    affine[:rank, -1] = image.GetOrigin()[:rank]
    return orientation_ras_lps(affine)


def add_simpleitk_reader(transform) -> int:
    """Give every ``LoadImage``/``LoadImaged`` in ``transform`` a :class:`SimpleITKReader`.

    The reader goes in at the lowest priority, so files the loader could already read (NIfTI
    through nibabel, even when the bundle named its reader explicitly) keep their reader.

    Parameters
    ----------
    transform : monai.transforms.Transform
        A loader, or a ``Compose`` (nested ones too) holding loaders.

    Returns
    -------
    int
        How many loaders got the reader.

    Examples
    --------
    >>> from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
    >>> from monai_topo.inference.readers import add_simpleitk_reader
    >>> add_simpleitk_reader(Compose([LoadImaged("image"), EnsureChannelFirstd("image")]))
    1
    """
    if isinstance(transform, Compose):
        return sum(add_simpleitk_reader(t) for t in transform.transforms)
    loader = transform._loader if isinstance(transform, LoadImaged) else transform
    if not isinstance(loader, LoadImage):
        return 0
    if not any(isinstance(reader, SimpleITKReader) for reader in loader.readers):
        # LoadImage tries its readers last-registered first: index 0 is the fallback.
        loader.readers.insert(0, SimpleITKReader())
    return 1


def load_image(path: PathLike) -> MetaTensor:
    """Read one image (NIfTI via nibabel, else :data:`SIMPLEITK_SUFFIXES` via SimpleITK) with its metadata.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    monai.data.MetaTensor
        The array in ITK index order, no channel dimension added; ``meta["affine"]`` in RAS.

    Examples
    --------
    >>> import tempfile, os
    >>> import nibabel as nib, numpy as np
    >>> from monai_topo.inference.readers import load_image
    >>> path = os.path.join(tempfile.mkdtemp(), "a.nii.gz")
    >>> nib.save(nib.Nifti1Image(np.zeros((4, 5), np.uint8), np.diag([2.0, 2.0, 1.0, 1.0])), path)
    >>> image = load_image(path)
    >>> tuple(image.shape), image.affine[0, 0].item()
    ((4, 5), 2.0)
    """
    loader = LoadImage(image_only=True, dtype=None)
    add_simpleitk_reader(loader)
    return loader(path)


__all__ = ["SIMPLEITK_SUFFIXES", "SimpleITKReader", "add_simpleitk_reader", "load_image"]
