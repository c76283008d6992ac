"""Test-time topological refinement (Clough et al., Eq. 5) as MONAI array and dictionary transforms."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import CropForeground, MapTransform, Transform

from monai_topo.losses import TopologicalPriorLoss
from monai_topo.priors import parse_prior, prior_satisfied
from monai_topo.validation import check_bool, check_int, check_number, native_array
from monai_topo.ph import DEFAULT_CONNECTIVITY, betti_numbers
from monai_topo.transforms.frozen_activations import cache_frozen_activations, last_parameterised_layers

RECORD_KEY = "topological_postprocess"
"""Metadata key under which each refined item records what the refinement did."""

AUTO_ROI_VOXELS = 64 * 128 * 128
"""Smallest 3D item (voxels) that ``roi_threshold="auto"`` refines on its region of interest only."""
AUTO_ROI_FRACTION = 0.4
"""``roi_threshold="auto"`` takes this fraction of the binarisation threshold (0.2 for 0.5)."""

AUTO_PH_FLOOR = 0.01
"""``ph_floor="auto"``: the floor under the probability map of a large 3D item for ``L_topo``."""

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
    "adamw": torch.optim.AdamW,
}


def _make_optimizer(optimizer, params, lr: float) -> torch.optim.Optimizer:
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)} or a callable(params), got {optimizer!r}.")
        return OPTIMIZERS[optimizer](params, lr=lr)
    if callable(optimizer):
        return optimizer(params)
    raise TypeError(f"optimizer must be a name or a callable(params), got {type(optimizer).__name__}.")


def _native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware (else autocast would only emulate it, slowly)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        try:
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a build without oneDNN's query
            return False
    return False


def _first_convolution(network: torch.nn.Module) -> torch.nn.modules.conv._ConvNd | None:
    return next((m for m in network.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)), None)


def _as_item(image, network: torch.nn.Module) -> torch.Tensor:
    """``image`` as a plain channel-first tensor, checked against the network's first convolution."""
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(native_array(image, "image"))
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor or numpy.ndarray (C, *spatial), got {type(image).__name__}.")
    if image.ndim not in (3, 4):
        raise ValueError(
            f"image must be one channel-first item (C, H, W) or (C, D, H, W) without a batch dimension, "
            f"got shape {tuple(image.shape)}."
        )
    conv = _first_convolution(network)
    if conv is not None:
        spatial_dims = conv.weight.ndim - 2
        if image.ndim - 1 != spatial_dims:
            raise ValueError(
                f"image of shape {tuple(image.shape)} is read as (C={image.shape[0]}, {image.ndim - 1} spatial dims), "
                f"but the network's first convolution is {spatial_dims}D; give the channel dimension explicitly, "
                f"e.g. image[None] for a single-channel {spatial_dims}D image."
            )
        if conv.in_channels != image.shape[0]:
            raise ValueError(
                f"image has {image.shape[0]} channels (shape {tuple(image.shape)}) but the network's first "
                f"convolution expects {conv.in_channels}."
            )
    if image.is_floating_point() or image.is_complex():
        if not bool(torch.isfinite(image).all()):
            raise ValueError("image contains NaN or Inf values; cannot refine this item.")
    return image.as_subclass(torch.Tensor) if isinstance(image, torch.Tensor) else image


def _trainable(work: torch.nn.Module, train_frozen: bool) -> list[torch.nn.Parameter]:
    """The parameters of the copy that Eq. 5 optimises (frozen ones stay frozen unless asked)."""
    params = list(work.parameters())  # never empty: refine_with_topology checked the network first
    if train_frozen:
        for p in params:
            p.requires_grad_(True)
        return params
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError(
            "every parameter of the network is frozen (requires_grad=False), so there is nothing to refine; "
            "pass train_frozen=True to refine a copy of all of them (the caller's network stays frozen)."
        )
    return trainable


def refine_with_topology(
    network: torch.nn.Module,
    image: torch.Tensor,
    prior=None,
    *,
    class_priors: Mapping | None = None,
    inferer: Callable | None = None,
    lambda_topo: float = 0.01,
    lr: float = 1e-4,
    iterations: int = 100,
    optimizer: str | Callable = "adam",
    sigmoid: bool | None = None,
    softmax: bool = False,
    other_act: Callable | None = None,
    include_background: bool = True,
    connectivity: str = DEFAULT_CONNECTIVITY,
    threshold: float = 0.5,
    stop_when_satisfied: bool = True,
    on_failure: str = "refined",
    train_frozen: bool = False,
    roi_threshold: float | str | None = "auto",
    roi_margin: int = 8,
    roi_divisible: int = 16,
    refine_last: int | None = None,
    cache_frozen: bool = True,
    ph_floor: float | str | None = "auto",
    amp: bool | str = "auto",
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Refine a copy of ``network`` on one item so its output takes the prior's topology (Eq. 5).

    Minimises ``(1/V)·|f(X; w) − f(X; w_n)|² + λ·L_topo(X; w_n)`` over a copy ``w_n`` of the
    weights ``w``, where ``f`` is the network output after the activation (applied once),
    ``V`` the number of pixels/voxels (the squared differences are summed over channels) and
    ``L_topo`` the :class:`~monai_topo.losses.TopologicalPriorLoss` of ``f`` (Eq. 3-4, summed over
    the scored channels or ``class_priors`` groups). The
    caller's network is never modified. Works inside ``torch.no_grad()``,
    ``torch.inference_mode()`` and ``monai.networks.eval_mode`` (gradients are enabled for the
    copy only), on the network's device; a float16/bfloat16 network is refined in a float32 copy
    (Adam's updates underflow in half precision), and its own dtype is kept.

    Parameters
    ----------
    network : torch.nn.Module
        Trained segmentation network returning logits ``(1, C, *spatial)`` on the input's grid
        (no final activation: give it as ``sigmoid``/``softmax``/``other_act``).
    image : torch.Tensor or numpy.ndarray, shape (C_in, H, W) or (C_in, D, H, W)
        One channel-first item (no batch dimension).
    prior, class_priors
        Betti-number prior(s) as :class:`~monai_topo.losses.TopologicalPriorLoss` accepts.
    inferer : callable, optional
        A MONAI inferer called as ``inferer(inputs, network)``; default ``network(inputs)``.
    lambda_topo : float
        λ of Eq. 5 (paper: 0.02 MNIST, 0.01 ACDC, 0.005 3D placenta).
    lr : float
        Learning rate. The paper's reference code used Adam with 1e-5 over 100 iterations.
    iterations : int
        Maximum number of optimiser steps.
    optimizer : {"adam", "sgd", "adamw"} or callable
        Optimiser name (learning rate ``lr``), or ``callable(params) -> Optimizer`` (which then
        sets its own learning rate).
    sigmoid, softmax, other_act
        The activation that turns the network's logits into probabilities, applied once, as in
        :class:`~monai_topo.losses.TopologicalPriorLoss`. ``sigmoid`` defaults to True unless
        ``softmax`` or ``other_act`` is given.
    include_background, connectivity
        As in :class:`~monai_topo.losses.TopologicalPriorLoss`.
    threshold : float
        Probability in [0, 1] at which the output is binarised to check the prior.
    stop_when_satisfied : bool
        Stop as soon as the thresholded output has the prior's Betti numbers (zero steps when it
        already has them).
    on_failure : {"refined", "initial"}
        What to return when the prior still does not hold after ``iterations`` steps: the refined
        output (``"refined"``, default, Eq. 5 as in the paper), or the network's initial prediction
        (``"initial"``: a refinement that cannot reach the prior, e.g. one that erases a broken
        ring piece by piece because it cannot join it, leaves the segmentation as it was). The
        record's ``betti_after`` and ``satisfied_after`` describe what is returned, ``reverted`` says
        whether the initial prediction was.
    train_frozen : bool
        Whether parameters with ``requires_grad=False`` are refined too (in the copy). Default
        False: a frozen encoder stays frozen; a network frozen everywhere needs ``True``.
    roi_threshold : float, "auto" or None
        Region-of-interest mode: optimise only on the bounding box of the voxels whose initial
        probability exceeds this value, plus ``roi_margin`` voxels, grown to a multiple of
        ``roi_divisible`` (so U-Nets accept it). Outside it the initial prediction is kept, which
        cannot add features there as long as ``roi_threshold < threshold``; the MSE term still
        divides by the whole item's ``V``. Inside it, the network sees a cropped input, so
        predictions within the receptive field of the box edge may differ from whole-image
        inference, and everywhere for a network with instance norm (MONAI's ``UNet`` default),
        whose statistics change with the box. None: the whole item. ``"auto"`` (default): ``0.4 · threshold``
        for 3D items of at least ``AUTO_ROI_VOXELS`` voxels (64×128×128), where each step's
        forward and backward pass then costs the box only (measured in ``docs/benchmarks.md``),
        None for smaller items.
    roi_margin, roi_divisible : int
        See ``roi_threshold``.
    refine_last : int, optional
        Tail mode: optimise only the parameters of the last ``refine_last`` layers that hold
        parameters (leaf modules, in registration order: the decoder's last stage of a MONAI
        U-Net; see :func:`~monai_topo.transforms.frozen_activations.last_parameterised_layers`),
        the rest of the copy frozen. Default None: every trainable parameter (the whole network).
    cache_frozen : bool
        Compute once, at the first step, the output of every frozen module that runs before the
        first refined layer (:func:`~monai_topo.transforms.frozen_activations.cache_frozen_activations`),
        so each step costs the refined tail only. The output is the same as a full forward pass
        of the refined copy (to float rounding); False recomputes the whole network every step.
    ph_floor : float, "auto" or None
        Compute ``L_topo`` on ``max(p, ph_floor)``: the bars that lie wholly below the floor (the
        background's noise, thousands of them in a large volume, each adding less than
        ``ph_floor²`` to the loss) vanish and the others end at the floor at the latest, so the
        PH costs a fraction (measured on a 96×240×256 prediction: 7.1 s → 1.7 s for PH and its
        backward, loss 69.09 → 68.75). The Betti check at ``threshold`` is unaffected.
        ``"auto"`` (default): 0.01 where ``roi_threshold="auto"`` would crop (3D items of at
        least ``AUTO_ROI_VOXELS``), None (the exact loss) otherwise.
    amp : bool or "auto"
        Run the network's forward and backward passes under ``torch.autocast`` in bfloat16 (the
        weights, Adam's state, the MSE and ``L_topo`` stay float32, as in mixed-precision
        training). ``"auto"`` (default): on for 3D items of at least ``AUTO_ROI_VOXELS`` where the
        device computes bfloat16 natively (CPUs with AVX-512 BF16 or AMX, CUDA GPUs from Ampere
        on), where it makes each step about twice as fast (``docs/benchmarks.md``); off otherwise.

    Returns
    -------
    probabilities : torch.Tensor, shape (C, *spatial)
        The refined, activated output (detached, float32, on the network's device).
    record : dict
        ``iterations`` (steps taken), ``loss`` (Eq. 5 before each step), ``betti_before``/``betti_after``
        (one tuple per scored map), ``satisfied_before``/``satisfied_after``, ``seconds``, ``activation``
        (``"sigmoid"``, ``"softmax"``, ``"other"`` or None: the one applied to the logits), ``roi``
        (the box as ``[start, end]`` lists, or None), ``refined_parameters`` (names of the
        parameters optimised), ``cached_modules`` (names of the modules computed once) and ``amp``
        (whether the network ran in bfloat16) and ``reverted`` (whether ``on_failure="initial"`` returned the
        initial prediction).

    Examples
    --------
    >>> import torch
    >>> from monai_topo.transforms import refine_with_topology
    >>> net = torch.nn.Conv2d(1, 1, 3, padding=1)
    >>> with torch.no_grad():
    ...     probs, record = refine_with_topology(net, torch.rand(1, 16, 16), prior=(1, 0), iterations=3)
    >>> probs.shape, record["iterations"] <= 3
    (torch.Size([1, 16, 16]), True)
    """
    start_time = time.perf_counter()
    if not isinstance(network, torch.nn.Module):
        raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}.")
    image = _as_item(image, network)
    iterations = check_int(iterations, "iterations", minimum=0)
    lambda_topo = check_number(lambda_topo, "lambda_topo", 0)
    threshold = check_number(threshold, "threshold", 0, 1)
    if isinstance(optimizer, str):
        lr = check_number(lr, "lr", 0)
    large = image.ndim == 4 and image[0].numel() >= AUTO_ROI_VOXELS
    if isinstance(roi_threshold, str):
        if roi_threshold != "auto":
            raise ValueError(f"roi_threshold must be a probability, 'auto' or None, got {roi_threshold!r}.")
        roi_threshold = AUTO_ROI_FRACTION * threshold if large else None
    if isinstance(ph_floor, str):
        if ph_floor != "auto":
            raise ValueError(f"ph_floor must be a probability, 'auto' or None, got {ph_floor!r}.")
        ph_floor = AUTO_PH_FLOOR if large else None
    if ph_floor is not None:
        ph_floor = check_number(ph_floor, "ph_floor", 0, 1)
        if ph_floor >= threshold:
            raise ValueError(f"ph_floor={ph_floor} must be below threshold={threshold}, or the prior loss cannot "
                             "see the features it must remove.")
    if roi_threshold is not None:
        roi_threshold = check_number(roi_threshold, "roi_threshold", 0, 1)
        if roi_threshold >= threshold:
            raise ValueError(
                f"roi_threshold={roi_threshold} must be below threshold={threshold}: outside the region the "
                "initial prediction is kept, which must not hold foreground the refinement cannot see."
            )
    if on_failure not in ("refined", "initial"):
        raise ValueError(f"on_failure must be 'refined' or 'initial', got on_failure={on_failure!r}.")
    for name, flag in (("stop_when_satisfied", stop_when_satisfied), ("train_frozen", train_frozen)):
        check_bool(flag, name)
    spatial_ndim = image.ndim - 1
    if prior is not None:
        prior = parse_prior(prior, spatial_ndim)
    if sigmoid is None:
        sigmoid = not softmax and other_act is None
    topo_loss = TopologicalPriorLoss(
        prior=prior,
        class_priors=class_priors,
        connectivity=connectivity,
        include_background=include_background,
        sigmoid=sigmoid,
        softmax=softmax,
        other_act=other_act,
        reduction="sum",  # one item: L_topo is the sum over its scored maps, as Eq. 4 sums dimensions
    )
    reference_param = next(network.parameters(), None)
    if reference_param is None:
        raise ValueError("network has no parameters to refine.")
    device, dtype = reference_param.device, reference_param.dtype
    if isinstance(amp, str):
        if amp != "auto":
            raise ValueError(f"amp must be True, False or 'auto', got {amp!r}.")
        amp = large and _native_bfloat16(device)
    check_bool(amp, "amp")
    # Inference loops run post-transforms under no_grad/inference_mode; Eq. 5 needs gradients,
    # for the private copy only.
    with torch.inference_mode(False), torch.enable_grad():
        # Only the copy is ever put in eval mode, given gradients or stepped: the caller's network,
        # its flags, mode and device stay as they were, whatever happens below.
        work = copy.deepcopy(network).eval()
        if dtype in (torch.float16, torch.bfloat16):
            # Adam's second moments underflow in half precision (NaN after a few steps): optimise a
            # float32 copy, as mixed-precision training keeps float32 master weights.
            work = work.float()
        params = _trainable(work, train_frozen)
        if refine_last is not None:
            if isinstance(refine_last, bool) or not isinstance(refine_last, (int, np.integer)) or refine_last < 1:
                raise ValueError(f"refine_last must be None (whole network) or an int >= 1, got {refine_last!r}.")
            tail = {id(p) for name in last_parameterised_layers(work, int(refine_last))
                    for p in work.get_submodule(name).parameters()}
            params = [p for p in params if id(p) in tail]
            if not params:
                raise ValueError(
                    f"the last {refine_last} parameterised layers of the network are all frozen; "
                    "raise refine_last or pass train_frozen=True."
                )
        chosen = {id(p) for p in params}
        for p in work.parameters():
            p.requires_grad_(id(p) in chosen)
        refined_names = [name for name, p in work.named_parameters() if p.requires_grad]
        x = image.to(device=device, dtype=next(work.parameters()).dtype).clone()[None]
        if x.ndim == 5 and x.device.type == "cpu":
            # oneDNN's 3D convolutions (and their backward) run several times faster on channels-last
            # tensors than torch's default layout on CPU; same arithmetic, the copy only.
            work = work.to(memory_format=torch.channels_last_3d)
            x = x.contiguous(memory_format=torch.channels_last_3d)

        cached_modules: list[str] = []

        def predict(inputs: torch.Tensor, first: bool = False, bfloat16: bool = amp) -> torch.Tensor:
            def run():
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bfloat16):
                    return inferer(inputs, work) if inferer is not None else work(inputs)

            if first and cache_frozen:
                logits, cached = cache_frozen_activations(work, run)
                cached_modules.extend(cached)
            else:
                logits = run()
            if not isinstance(logits, torch.Tensor):
                raise TypeError(
                    f"the network returned {type(logits).__name__}, not one logits tensor (deep supervision?); "
                    "refinement needs a network (or inferer) that returns a single (1, C, *spatial) tensor."
                )
            if logits.ndim != inputs.ndim or logits.shape[0] != 1 or logits.shape[2:] != inputs.shape[2:]:
                raise ValueError(
                    f"the network output has shape {tuple(logits.shape)} for an input of shape {tuple(inputs.shape)}: "
                    "refinement needs logits (1, C, *spatial) on the input's spatial grid."
                )
            if not bool(torch.isfinite(logits.detach()).all()):
                raise ValueError("network output contains NaN or Inf values; cannot refine this item.")
            return topo_loss.activate(logits.float())

        def topology(probs: torch.Tensor) -> tuple[list[tuple[int, ...]], bool]:
            maps, priors = topo_loss.scored_maps(probs.detach())
            betti = [betti_numbers(m >= threshold, connectivity) for m in maps[0].cpu()]
            return betti, all(prior_satisfied(b, p) for b, p in zip(betti, priors[0]))

        roi = None
        if roi_threshold is None and not amp:
            probs = predict(x, first=True)
            full_reference = reference = probs.detach()
            x_work = x
        else:
            # The initial prediction (its Betti numbers, and the result when no step is needed) is the
            # network's own, in its precision; the steps may run in bfloat16 and/or on a box only.
            with torch.no_grad():
                full_reference = predict(x, bfloat16=False)
            x_work = x
            if roi_threshold is not None:
                cropper = CropForeground(
                    select_fn=lambda p: p > roi_threshold, margin=roi_margin, k_divisible=roi_divisible,
                    allow_smaller=True,
                )
                box_start, box_end = cropper.compute_bounding_box(topo_loss.scored_maps(full_reference)[0][0])
                if all(e > s for s, e in zip(box_start, box_end)):
                    roi = [box_start.tolist(), box_end.tolist()]
                    x_work = cropper.crop_pad(x[0], box_start, box_end).as_tensor()[None]
            probs = None  # the first pass with gradients waits until a step is needed
        betti_before, satisfied_before = topology(full_reference)

        def assemble(probs: torch.Tensor) -> torch.Tensor:
            """Paste the ROI prediction into the initial whole-image prediction."""
            if roi is None:
                return probs
            out = full_reference.clone()
            src, dst = [slice(None), slice(None)], [slice(None), slice(None)]
            for s, e, size in zip(roi[0], roi[1], out.shape[2:]):
                dst.append(slice(max(s, 0), min(e, size)))
                src.append(slice(max(s, 0) - s, min(e, size) - s))
            out[tuple(dst)] = probs[tuple(src)]
            return out

        optim = _make_optimizer(optimizer, params, lr)
        voxels = float(full_reference[0, 0].numel())  # Eq. 5's V: the whole item's voxels, also with an ROI
        trace: list[float] = []
        for step in range(iterations + 1):
            if step > 0:
                probs = predict(x_work)
            if step == 0:  # before any step the result is the initial whole-item prediction, also with an ROI
                betti_after, satisfied = betti_before, satisfied_before
            elif stop_when_satisfied or step == iterations:
                betti_after, satisfied = topology(assemble(probs.detach()))
            if step == iterations or (stop_when_satisfied and satisfied):
                break
            if probs is None:
                probs = predict(x_work, first=True)
                reference = probs.detach()
            topo_input = probs if ph_floor is None else probs.clamp_min(ph_floor)
            loss = ((probs - reference) ** 2).sum() / voxels + lambda_topo * topo_loss.score_probabilities(topo_input)
            optim.zero_grad()
            loss.backward()
            optim.step()
            trace.append(float(loss.detach()))
        # The ROI's prediction differs from the whole item's (padding at the box edges, instance norm's
        # statistics): without a step, keep the whole item's, so an item that already has the prior is
        # returned unchanged.
        final = assemble(probs.detach()) if trace else full_reference
        reverted = bool(trace) and not satisfied and on_failure == "initial"
        if reverted:
            final, betti_after, satisfied = full_reference, betti_before, satisfied_before
        record = {
            "iterations": len(trace),
            "loss": trace,
            "betti_before": betti_before,
            "betti_after": betti_after,
            "satisfied_before": satisfied_before,
            "satisfied_after": satisfied,
            "seconds": time.perf_counter() - start_time,
            "roi": roi,
            "activation": "sigmoid" if sigmoid else "softmax" if softmax else "other" if other_act is not None else None,
            "refined_parameters": refined_names,
            "cached_modules": cached_modules,
            "amp": amp,
            "reverted": reverted,
        }
        return final[0], record


class TopologicalPostprocess(Transform):
    """Refine a network's prediction for one item so it has the prior's topology (Eq. 5).

    A thin wrapper over :func:`refine_with_topology`: every call starts again from the trained
    weights, optimises a private copy of them, and returns the refined probability map as a
    :class:`monai.data.MetaTensor` whose ``meta["topological_postprocess"]`` records what was
    done (iterations, loss trace, Betti numbers before/after, seconds). The caller's network is
    never modified.

    Parameters
    ----------
    network : torch.nn.Module
        The trained segmentation network (logits out).
    prior, class_priors
        The default prior; a call may override ``prior`` per item.
    **kwargs
        Any keyword of :func:`refine_with_topology` (``inferer``, ``lambda_topo``, ``lr``,
        ``iterations``, ``optimizer``, ``sigmoid``, ``softmax``, ``connectivity``, ``threshold``,
        ``stop_when_satisfied``, ``roi_threshold``, ``refine_last``, ``cache_frozen``, ...).

    Examples
    --------
    >>> import torch
    >>> from monai_topo.transforms import TopologicalPostprocess
    >>> refine = TopologicalPostprocess(torch.nn.Conv2d(1, 1, 3, padding=1), prior=(1, 0), iterations=2)
    >>> out = refine(torch.rand(1, 16, 16))
    >>> out.shape, sorted(out.meta["topological_postprocess"])[:3]
    (torch.Size([1, 16, 16]), ['activation', 'amp', 'betti_after'])
    """

    def __init__(self, network: torch.nn.Module, prior=None, class_priors: Mapping | None = None, **kwargs) -> None:
        if not isinstance(network, torch.nn.Module):
            raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}.")
        unknown = set(kwargs) - set(refine_with_topology.__kwdefaults__)
        if unknown:
            raise TypeError(f"unexpected arguments {sorted(unknown)} for TopologicalPostprocess.")
        self.network = network
        self.prior = None if prior is None else parse_prior(prior)
        self.class_priors = class_priors
        self.kwargs = kwargs

    def __call__(self, img: torch.Tensor, prior=None, meta: Mapping | None = None) -> MetaTensor:
        """Refine ``img`` (C_in, *spatial); ``prior`` overrides the default for this item.

        ``meta`` (default: ``img.meta`` for a MetaTensor) becomes the output's metadata, so the
        affine travels on to writers.
        """
        prior = self.prior if prior is None else prior
        if prior is None and self.class_priors is None:
            raise ValueError("no prior: give prior= (or class_priors=) to the constructor or to the call.")
        probs, record = refine_with_topology(
            self.network, img, prior, class_priors=self.class_priors, **self.kwargs
        )
        if meta is None:
            meta = img.meta if isinstance(img, MetaTensor) else {}
        out = MetaTensor(probs, meta=copy.deepcopy(dict(meta)))
        out.meta[RECORD_KEY] = record
        return out


class TopologicalPostprocessd(MapTransform):
    """Dictionary-based wrapper of :class:`TopologicalPostprocess`.

    Reads the image from each of ``keys``, refines the network's prediction for it and writes
    the refined probabilities to ``output_key`` (default ``"pred"``), keeping the metadata of
    what was there (so it fits after decollation in a ``SupervisedEvaluator``'s postprocessing).
    A per-item prior can be read from ``prior_key``.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the input images (channel-first, no batch dimension).
    network : torch.nn.Module
        The trained network.
    output_key : str or sequence of str
        Where to write each refined map; one per key.
    prior, class_priors
        Fixed prior(s) for every item.
    prior_key : str, optional
        Key holding each item's prior (e.g. ``(1, 1)`` or ``(1, 0)`` per slice); required in
        every item when given, and used instead of ``prior``.
    allow_missing_keys : bool
        Skip missing image keys instead of raising.
    **kwargs
        Any keyword of :func:`refine_with_topology`.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.transforms import TopologicalPostprocessd
    >>> refine = TopologicalPostprocessd("image", torch.nn.Conv2d(1, 1, 3, padding=1), prior_key="prior", iterations=2)
    >>> item = refine({"image": torch.rand(1, 16, 16), "prior": (1, 0)})
    >>> item["pred"].meta["topological_postprocess"]["iterations"] <= 2
    True
    """

    def __init__(
        self,
        keys: KeysCollection,
        network: torch.nn.Module,
        output_key: KeysCollection = "pred",
        prior=None,
        class_priors: Mapping | None = None,
        prior_key: str | None = None,
        allow_missing_keys: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.refiner = TopologicalPostprocess(network, prior=prior, class_priors=class_priors, **kwargs)
        self.output_keys = (output_key,) * len(self.keys) if isinstance(output_key, str) else tuple(output_key)
        if len(self.output_keys) != len(self.keys):
            raise ValueError(f"output_key must give one key per input key {self.keys}, got {output_key!r}.")
        self.prior_key = prior_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        prior = None
        if self.prior_key is not None:
            if self.prior_key not in d:
                raise KeyError(f"prior_key {self.prior_key!r} is missing from the item (keys: {sorted(map(str, d))}).")
            prior = d[self.prior_key]
        for key, output_key in self.key_iterator(d, self.output_keys):
            previous = d.get(output_key)
            meta = previous.meta if isinstance(previous, MetaTensor) else None
            d[output_key] = self.refiner(d[key], prior=prior, meta=meta)
        return d
