"""Finding, listing and copying MONAI bundles, and instantiating what batch inference needs from a
model-zoo inference config."""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose, Invertd, SaveImage, SaveImaged

import monai_topo
from monai_topo.inference.slicewise import SliceWiseInferer
from monai_topo.priors import parse_prior

BUNDLES_ENV = "MONAI_TOPO_BUNDLES"
"""Environment variable with extra folders (``os.pathsep``-separated) searched for bundle names."""

INFERENCE_CONFIG = Path("configs") / "inference.json"
DEFAULT_CKPT = Path("models") / "model.pt"
"""Where the model zoo keeps a bundle's weights; used when the config has no ``ckpt_path``."""

REQUIRED_IDS = ("network_def", "preprocessing", "inferer")
"""Ids of a model-zoo ``configs/inference.json`` that ``monai-topo infer`` needs. It also reads, when
present, the model zoo's ``device``, ``network``, ``postprocessing`` (its savers left out) and
``ckpt_path``, and the topology ids of :data:`TOPOLOGY_IDS`."""

TOPOLOGY_IDS = {
    "spatial_dims": None,
    "prior": None,
    "end_slice_prior": None,
    "end_slices": 1,
    "postprocess": True,
    "refine_args": {},
}
"""Optional ids and their defaults, for a bundle whose ``inferer`` is not a
:class:`~monai_topo.inference.SliceWiseInferer` (``spatial_dims`` None: from ``network_def``)."""

COPY_IGNORE = ("dataset", "eval", "__pycache__", "*.pyc", ".*")
"""What :func:`copy_bundle` leaves out: generated data, outputs, caches (weights are copied)."""


def shipped_bundles_folder() -> Path:
    """The bundles that come with the package: ``monai_topo/bundles`` in a wheel install, the
    repository's ``bundles/`` in a source checkout."""
    package = Path(monai_topo.__file__).resolve().parent
    installed = package / "bundles"
    return installed if installed.is_dir() else package.parent / "bundles"


def bundle_search_path() -> list[Path]:
    """Folders searched for a bundle given by name: ``$MONAI_TOPO_BUNDLES``, then the shipped bundles."""
    extra = [Path(p).expanduser() for p in os.environ.get(BUNDLES_ENV, "").split(os.pathsep) if p]
    return [*extra, shipped_bundles_folder()]


def list_bundles() -> dict[str, Path]:
    """Bundles found by name, first folder of :func:`bundle_search_path` first.

    Examples
    --------
    >>> from monai_topo.inference import list_bundles
    >>> sorted(list_bundles())[:2]
    ['cardiac_myocardium_topo', 'placenta_topo']
    """
    found: dict[str, Path] = {}
    for folder in bundle_search_path():
        if folder.is_dir():
            for root in sorted(folder.iterdir()):
                if (root / INFERENCE_CONFIG).is_file():
                    found.setdefault(root.name, root.resolve())
    return found


def copy_bundle(name: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Copy a bundle (by name or folder) into ``destination/<name>``, writable, as ``monai.bundle download`` does.

    Weights, configs, docs and licence are copied; generated data and outputs are not.

    Raises
    ------
    ValueError
        Unknown bundle, or ``destination/<name>`` exists already.

    Examples
    --------
    >>> import tempfile
    >>> from monai_topo.inference import copy_bundle
    >>> root = copy_bundle("placenta_topo", tempfile.mkdtemp())
    >>> (root / "configs" / "inference.json").is_file(), root.name
    (True, 'placenta_topo')
    """
    source = resolve_bundle(name)
    target = Path(destination).expanduser() / source.name
    if target.exists():
        raise ValueError(f"{target} exists already; remove it or copy into another folder.")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*COPY_IGNORE), copy_function=shutil.copyfile)
    for path in [target, *target.rglob("*")]:  # an installed package may be read-only; the copy is the user's
        path.chmod(path.stat().st_mode | stat.S_IWUSR | stat.S_IRUSR | (stat.S_IXUSR if path.is_dir() else 0))
    return target


def resolve_bundle(bundle: str | os.PathLike) -> Path:
    """The root folder of a bundle given as a path or as a name.

    Parameters
    ----------
    bundle : str or os.PathLike
        A bundle folder (holding ``configs/inference.json``), or the name of one in a folder of
        :func:`bundle_search_path`, e.g. ``"cardiac_myocardium_topo"``.

    Returns
    -------
    Path
        The bundle root, resolved.

    Raises
    ------
    ValueError
        Neither a bundle folder nor a known bundle name.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from monai_topo.inference.bundle import resolve_bundle
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "configs").mkdir()
    >>> _ = (root / "configs" / "inference.json").write_text("{}")
    >>> resolve_bundle(root) == root.resolve()
    True
    """
    path = Path(bundle).expanduser()
    candidates = [path]
    if len(path.parts) == 1:
        candidates += [folder / path for folder in bundle_search_path()]
    for candidate in candidates:
        if (candidate / INFERENCE_CONFIG).is_file():
            return candidate.resolve()
    raise ValueError(
        f"bundle {os.fspath(bundle)!r} is not a bundle folder with {INFERENCE_CONFIG.as_posix()}, nor a bundle "
        f"name in {', '.join(map(str, bundle_search_path()))} (set ${BUNDLES_ENV} to add folders)."
    )


def read_inference_config(bundle_root: str | os.PathLike) -> ConfigParser:
    """Parse ``configs/inference.json`` of a bundle, with ``bundle_root`` set to where the bundle is.

    Raises
    ------
    ValueError
        The config lacks one of :data:`REQUIRED_IDS`.
    """
    bundle_root = Path(bundle_root)
    parser = ConfigParser()
    parser.read_config(bundle_root / INFERENCE_CONFIG)
    missing = [key for key in REQUIRED_IDS if key not in parser]
    if missing:
        raise ValueError(
            f"{bundle_root / INFERENCE_CONFIG} lacks the ids {missing} that monai-topo infer needs "
            f"(it needs {list(REQUIRED_IDS)})."
        )
    parser["bundle_root"] = str(bundle_root)
    return parser


def load_weights(network: torch.nn.Module, ckpt_path: str | os.PathLike, device: torch.device) -> torch.nn.Module:
    """Load a bundle checkpoint (a state dict, or ``{"model": state_dict}`` as MONAI's savers write it).

    Loaded with ``torch.load(..., weights_only=True)``: tensors and plain containers only, never
    arbitrary pickled objects.

    Raises
    ------
    FileNotFoundError
        No checkpoint at ``ckpt_path``.
    ValueError
        The file is damaged or not a checkpoint, holds objects other than weights, or its
        weights do not fit the network.
    """
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt_path} not found: train the bundle first (configs/train.json).")
    try:
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        if zipfile.is_zipfile(ckpt_path) and "weights_only" in str(error).lower().replace(" ", "_"):
            raise ValueError(
                f"checkpoint {ckpt_path} holds Python objects other than weights, which are not loaded from a file "
                "that may be untrusted; save the network's state_dict() instead."
            ) from None
        raise ValueError(f"checkpoint {ckpt_path} is damaged or not a PyTorch checkpoint; replace it.") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise ValueError(f"checkpoint {ckpt_path} is damaged or not a PyTorch checkpoint ({reason}); replace it.") from None
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]
    if not isinstance(state, Mapping):
        raise ValueError(f"checkpoint {ckpt_path} holds a {type(state).__name__}, not a state dict of weights.")
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"checkpoint {ckpt_path} does not fit the bundle's network: {error}") from error
    return network.to(device).eval()


@dataclass
class InferenceBundle:
    """What a batch job takes from a bundle: a trained network and the bundle's own pipeline.

    Attributes
    ----------
    root : Path
        The bundle folder.
    device : torch.device
        Where the network runs.
    network : torch.nn.Module
        The trained network, in eval mode.
    inferer : SliceWiseInferer
        The bundle's inferer, or the bundle's plain inferer wrapped with its topology ids.
    preprocessing : callable
        Dictionary transform turning ``{"image": path}`` into the network-ready ``(C, *spatial)`` image.
    postprocessing : callable or None
        The bundle's ``postprocessing`` less its savers, applied to ``{"image", "pred"}``; None:
        activation and threshold (one channel) or argmax.
    inverts : bool
        Whether ``postprocessing`` maps the prediction back to the input's grid (has an ``Invertd``).
    """

    root: Path
    device: torch.device
    network: torch.nn.Module
    inferer: SliceWiseInferer
    preprocessing: Callable
    postprocessing: Callable | None
    inverts: bool


def _flatten(transform) -> list:
    """The transforms of a (nested) ``Compose``, in order."""
    if isinstance(transform, Compose):
        return [t for inner in transform.transforms for t in _flatten(inner)]
    return [transform]


def _without_savers(postprocessing) -> tuple[Callable | None, bool]:
    """The post-processing less its ``SaveImage(d)`` transforms, and whether it inverts the preprocessing."""
    if postprocessing is None:
        return None, False
    kept = [t for t in _flatten(postprocessing) if not isinstance(t, (SaveImage, SaveImaged))]
    return Compose(kept), any(isinstance(t, Invertd) for t in kept)


def _optional(parser: ConfigParser, key: str, default=None):
    return parser.get_parsed_content(key) if key in parser else default


def _network_spatial_dims(parser: ConfigParser) -> int | None:
    """``spatial_dims`` of the ``network_def`` (as MONAI's networks take it), else None."""
    if "network_def#spatial_dims" in parser:
        return parser.get_parsed_content("network_def#spatial_dims")
    return None


def topology_inferer(parser: ConfigParser) -> SliceWiseInferer:
    """The bundle's ``inferer`` when it is a :class:`SliceWiseInferer`, else that inferer wrapped in one
    with the bundle's topology ids (:data:`TOPOLOGY_IDS`, defaults where absent)."""
    inferer = parser.get_parsed_content("inferer")
    if isinstance(inferer, SliceWiseInferer):
        return inferer
    values = {key: _optional(parser, key, default) for key, default in TOPOLOGY_IDS.items()}
    spatial_dims = values["spatial_dims"] if values["spatial_dims"] is not None else _network_spatial_dims(parser)
    return SliceWiseInferer(
        inferer,
        spatial_dims=spatial_dims,
        prior=values["prior"],
        end_slice_prior=values["end_slice_prior"],
        end_slices=values["end_slices"],
        refine=bool(values["postprocess"]),
        refine_args=dict(values["refine_args"]),
    )


def check_prior(prior, spatial_dims: int | None) -> None:
    """Validate a prior given for every item; ``spatial_dims`` None (unknown): as many as it has numbers.

    Raises
    ------
    ValueError
        Not a prior for ``spatial_dims`` dimensions (also what ``parse_prior`` raises as TypeError).
    """
    if spatial_dims is None:
        spatial_dims = len(prior) if isinstance(prior, (list, tuple)) and 1 <= len(prior) <= 3 else 2
    try:
        parse_prior(prior, spatial_dims, name="prior")
    except TypeError as error:
        raise ValueError(str(error)) from None


def load_bundle(
    parser: ConfigParser, device: str | torch.device | None = None, prior=None, postprocess: bool | None = None
) -> InferenceBundle:
    """Instantiate an :class:`InferenceBundle` from a parsed inference config.

    Parameters
    ----------
    parser : monai.bundle.ConfigParser
        From :func:`read_inference_config`.
    device : str or torch.device, optional
        Overrides the bundle's ``device``.
    prior : sequence, optional
        Overrides the bundle's prior, for every item and slice.
    postprocess : bool, optional
        Overrides whether the bundle refines (Eq. 5).

    Raises
    ------
    ValueError
        A malformed prior or topology id, or a checkpoint that cannot be loaded.
    """
    if device is not None:
        parser["device"] = torch.device(device)
    elif "device" not in parser:
        parser["device"] = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(parser.get_parsed_content("device"))
    inferer = topology_inferer(parser)
    if prior is not None:
        check_prior(prior, inferer.spatial_dims)
        inferer.prior, inferer.end_slice_prior = prior, None
    if postprocess is not None:
        inferer.refine = bool(postprocess)
    network = parser.get_parsed_content("network") if "network" in parser else parser.get_parsed_content("network_def")
    ckpt_path = _optional(parser, "ckpt_path", Path(parser["bundle_root"]) / DEFAULT_CKPT)
    postprocessing, inverts = _without_savers(_optional(parser, "postprocessing"))
    return InferenceBundle(
        root=Path(parser["bundle_root"]),
        device=device,
        network=load_weights(network, ckpt_path, device),
        inferer=inferer,
        preprocessing=parser.get_parsed_content("preprocessing"),
        postprocessing=postprocessing,
        inverts=inverts,
    )
