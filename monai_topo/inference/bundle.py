"""Finding a MONAI bundle and instantiating what batch inference needs from its inference config."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser

import monai_topo
from monai_topo.priors import parse_prior

BUNDLES_ENV = "MONAI_TOPO_BUNDLES"
"""Environment variable with extra folders (``os.pathsep``-separated) searched for bundle names."""

INFERENCE_CONFIG = Path("configs") / "inference.json"

REQUIRED_IDS = (
    "bundle_root",
    "device",
    "network",
    "ckpt_path",
    "spatial_dims",
    "prior",
    "postprocess",
    "refine_args",
    "inferer",
    "preprocessing",
    "slice_by_slice",
)
"""Ids a bundle's ``configs/inference.json`` must define for ``monai-topo infer``. It may also define
``slice_priors``: ``depth -> list of priors``, one per slice, e.g. looser priors for the end slices."""


def bundle_search_path() -> list[Path]:
    """Folders searched for a bundle given by name: ``$MONAI_TOPO_BUNDLES``, then the repository's ``bundles/``."""
    extra = [Path(p).expanduser() for p in os.environ.get(BUNDLES_ENV, "").split(os.pathsep) if p]
    return [*extra, Path(monai_topo.__file__).resolve().parents[1] / "bundles"]


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

    Raises
    ------
    FileNotFoundError
        No checkpoint at ``ckpt_path``.
    """
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt_path} not found: train the bundle first (configs/train.json).")
    state = torch.load(ckpt_path, map_location=device, weights_only=True)
    if isinstance(state.get("model"), Mapping):
        state = state["model"]
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"checkpoint {ckpt_path} does not fit the bundle's network: {error}") from error
    return network.to(device).eval()


@dataclass
class InferenceBundle:
    """What a batch job takes from a bundle: a trained network and how to feed and refine it.

    Attributes
    ----------
    root : Path
        The bundle folder.
    device : torch.device
        Where the network runs.
    network : torch.nn.Module
        The trained network, in eval mode.
    inferer : callable
        A MONAI inferer, called as ``inferer(inputs, network)``.
    preprocessing : callable
        Dictionary transform turning ``{"image": path}`` into the network-ready ``(C, *spatial)`` image.
    spatial_dims : int
        2 or 3: what the network takes.
    prior : list
        The default Betti prior of each refined item, as plain data (validated).
    postprocess : bool
        Whether the bundle refines predictions with the prior (Eq. 5) by default.
    refine_args : dict
        Keyword arguments of :func:`monai_topo.transforms.refine_with_topology`.
    slice_by_slice : bool
        Whether a 3D volume is split along its last axis into 2D slices for a 2D network.
    slice_priors : callable, optional
        ``depth -> list`` of one prior per slice of a sliced volume, instead of ``prior`` for all.
    """

    root: Path
    device: torch.device
    network: torch.nn.Module
    inferer: Callable
    preprocessing: Callable
    spatial_dims: int
    prior: list
    postprocess: bool
    refine_args: dict[str, Any]
    slice_by_slice: bool
    slice_priors: Callable[[int], list] | None = None


def load_bundle(parser: ConfigParser, device: str | torch.device | None = None) -> InferenceBundle:
    """Instantiate an :class:`InferenceBundle` from a parsed inference config.

    Parameters
    ----------
    parser : monai.bundle.ConfigParser
        From :func:`read_inference_config`.
    device : str or torch.device, optional
        Overrides the bundle's ``device``.

    Raises
    ------
    ValueError
        ``spatial_dims``, ``prior`` or ``refine_args`` are malformed.
    """
    if device is not None:
        parser["device"] = torch.device(device)
    device = torch.device(parser.get_parsed_content("device"))
    spatial_dims = parser.get_parsed_content("spatial_dims")
    if spatial_dims not in (2, 3):
        raise ValueError(f"the bundle's spatial_dims must be 2 or 3, got {spatial_dims!r}.")
    refine_args = dict(parser.get_parsed_content("refine_args"))
    for reserved in ("prior", "network", "image"):
        if reserved in refine_args:
            raise ValueError(f"the bundle's refine_args must not set {reserved!r}; it is given per item.")
    prior = parser.get_parsed_content("prior")
    parse_prior(prior, spatial_dims, name="the bundle's prior")
    network = load_weights(
        parser.get_parsed_content("network"), parser.get_parsed_content("ckpt_path"), device
    )
    return InferenceBundle(
        root=Path(parser["bundle_root"]),
        device=device,
        network=network,
        inferer=parser.get_parsed_content("inferer"),
        preprocessing=parser.get_parsed_content("preprocessing"),
        spatial_dims=spatial_dims,
        prior=list(prior),
        postprocess=bool(parser.get_parsed_content("postprocess")),
        refine_args=refine_args,
        slice_by_slice=bool(parser.get_parsed_content("slice_by_slice")),
        slice_priors=parser.get_parsed_content("slice_priors") if "slice_priors" in parser else None,
    )
