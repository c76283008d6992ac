"""Frozen activations for test-time refinement: refine the last layers, compute the rest once.

Eq. 5 optimises a copy of the network on one item. When only its last layers are refined, every
module that owns no refined parameter and runs before the first refined layer sees the same input
at every step, so its output is a constant: :func:`cache_frozen_activations` records it during one
forward pass and makes the module return it from then on, and each step of the refinement then
costs the forward and backward pass of the refined tail only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def last_parameterised_layers(network: torch.nn.Module, count: int) -> list[str]:
    """Names of the last ``count`` leaf modules that hold parameters, in registration order.

    Registration order is the order in which sequential networks and MONAI's U-Nets
    (``UNet``, ``BasicUNet``) call their layers, so these are the layers closest to the output.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))
    >>> last_parameterised_layers(net, 1)
    ['2']
    """
    leaves = [
        name
        for name, module in network.named_modules()
        if not any(True for _ in module.children()) and any(True for _ in module.parameters(recurse=False))
    ]
    return leaves[-count:] if count > 0 else []


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _detach(value):
    if isinstance(value, torch.Tensor):
        return value.detach()
    return type(value)(_detach(v) for v in value)


def _constant_forward(values: list, name: str) -> Callable:
    """A forward that returns the recorded outputs in the order of the recorded calls, cyclically."""
    versions = [[t._version for t in _tensors(v)] for v in values]
    position = [0]

    def forward(*args, **kwargs):
        i = position[0] % len(values)
        position[0] += 1
        if [t._version for t in _tensors(values[i])] != versions[i]:
            raise RuntimeError(
                f"the cached output of frozen module {name!r} was modified in place by a later layer; "
                "refine with cache_frozen=False for this network."
            )
        return values[i]

    return forward


def cache_frozen_activations(network: torch.nn.Module, run: Callable[[], object]) -> tuple[object, list[str]]:
    """Run one forward pass and make the constant frozen modules of ``network`` return their output.

    A module becomes constant when, at each of its calls, none of its parameters requires grad,
    its inputs do not require grad and it starts before every module of that pass of ``network``
    that owns a parameter requiring grad (so nothing trainable can have reached its input). Only
    the outermost such modules are cached; one called several times per pass (e.g. once per
    window of a sliding-window inferer) returns its recorded outputs in the recorded order.
    ``network`` is modified in place (give it a private copy, in eval mode) and must be
    deterministic for a fixed input (dropout off), as Eq. 5 assumes.

    Parameters
    ----------
    network : torch.nn.Module
        The copy being refined; its trainable parameters have ``requires_grad=True``.
    run : callable
        ``run()`` does the forward pass that every later step repeats (e.g. ``lambda: network(x)``
        or ``lambda: inferer(x, network)``).

    Returns
    -------
    output
        What ``run()`` returned (with the autograd graph of the trainable part).
    cached : list of str
        Names of the modules that now return their recorded output.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Conv2d(4, 1, 1)).eval()
    >>> net[0].requires_grad_(False)  # doctest: +ELLIPSIS
    Conv2d(...)
    >>> x = torch.rand(1, 1, 8, 8)
    >>> out, cached = cache_frozen_activations(net, lambda: net(x))
    >>> cached, bool(torch.equal(net(x), out))
    (['0'], True)
    """
    owners = {id(m) for m in network.modules() if any(p.requires_grad for p in m.parameters(recurse=False))}
    names, uses = {}, {}
    for name, m in network.named_modules(remove_duplicate=False):
        names.setdefault(id(m), name)
        uses[id(m)] = uses.get(id(m), 0) + 1
    state = {"trainable_started": False, "current": None}
    status: dict[int, list[bool]] = {}  # per call: was it an outermost constant module
    outputs: dict[int, list] = {}
    modules = {id(m): m for m in network.modules()}

    def pre_hook(module, args, kwargs):
        key = id(module)
        if module is network:
            state["trainable_started"] = key in owners  # each pass of the network starts afresh
            return None
        if key in owners:
            state["trainable_started"] = True
        if state["current"] is not None:
            status.setdefault(key, []).append(False)
            return None
        constant = (
            uses[key] == 1
            and not state["trainable_started"]
            and not any(p.requires_grad for p in module.parameters())
            and not any(t.requires_grad for t in _tensors((args, kwargs)))
        )
        status.setdefault(key, []).append(constant)
        if constant:
            state["current"] = key
        return None

    def post_hook(module, args, kwargs, output):
        if state["current"] == id(module):
            state["current"] = None
            outputs.setdefault(id(module), []).append(output)

    handles = []
    for m in network.modules():
        handles.append(m.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(m.register_forward_hook(post_hook, with_kwargs=True))
    try:
        output = run()
    finally:
        for h in handles:
            h.remove()
    cached = []
    for key, flags in status.items():
        values = outputs.get(key, [])
        if not all(flags) or len(values) != len(flags) or not all(_is_tensors(v) for v in values):
            continue
        modules[key].forward = _constant_forward([_detach(v) for v in values], names[key])
        cached.append(names[key])
    return output, cached


def _is_tensors(value) -> bool:
    """A tensor or a (nested) tuple/list of tensors: what a cached module may return."""
    if isinstance(value, torch.Tensor):
        return True
    return isinstance(value, (tuple, list)) and all(_is_tensors(v) for v in value)
