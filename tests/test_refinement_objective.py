"""Eq. 5 as refine_with_topology optimises it, against the objective written from the paper with gudhi.

For each activation (sigmoid, softmax with class priors, softmax with a foreground prior, other_act)
in 2D and 3D, two optimiser steps of the package and of the independent implementation must see
the same loss and the same parameter gradients. At the second step the MSE tie is non-zero, so
both terms of Eq. 5 are checked.
"""

import copy

import pytest
import torch

from eq_reference import eq5
from monai_topo.transforms import refine_with_topology

LAMBDA = 0.5
LR = 0.05


class RecordingSGD(torch.optim.SGD):
    """SGD that keeps the gradients it was given at each step."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.grads = []

    def step(self, closure=None):
        self.grads.append([p.grad.detach().clone() for group in self.param_groups for p in group["params"]])
        return super().step(closure)


def small_net(spatial_ndim, out_channels, seed):
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d if spatial_ndim == 2 else torch.nn.Conv3d
    return torch.nn.Sequential(
        conv(1, 6, 3, padding=1), torch.nn.Tanh(), conv(6, out_channels, 3, padding=1)
    ).eval()


CASES = {
    # name: (spatial shape, out channels, refine kwargs, activation, maps scored with their priors)
    "sigmoid-2d": ((12, 12), 1, {"prior": (1, 1), "sigmoid": True}, torch.sigmoid, lambda p: [(p[0], (1, 1))]),
    "sigmoid-3d": ((7, 8, 8), 1, {"prior": (1, 0, 0), "sigmoid": True}, torch.sigmoid, lambda p: [(p[0], (1, 0, 0))]),
    "softmax-class-priors-2d": (
        (12, 12), 3, {"class_priors": {2: (1, 1), (1, 2): (1, 0)}, "softmax": True},
        lambda z: torch.softmax(z, 0), lambda p: [(p[2], (1, 1)), ((p[1] + p[2]).clamp(max=1), (1, 0))],
    ),
    "softmax-class-priors-3d": (
        (6, 7, 8), 2, {"class_priors": {1: (1, 0, 0)}, "softmax": True},
        lambda z: torch.softmax(z, 0), lambda p: [(p[1], (1, 0, 0))],
    ),
    "softmax-foreground-prior-2d": (
        (12, 12), 3, {"prior": (1, (0, 1)), "softmax": True, "include_background": False},
        lambda z: torch.softmax(z, 0), lambda p: [(p[1], (1, (0, 1))), (p[2], (1, (0, 1)))],
    ),
    "other-act-2d": (
        (12, 12), 1, {"prior": (1, 0), "other_act": lambda t: torch.sigmoid(t) ** 2},
        lambda z: torch.sigmoid(z) ** 2, lambda p: [(p[0], (1, 0))],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_first_steps_equal_the_objective_written_from_the_paper(name):
    spatial, channels, kwargs, activation, scored = CASES[name]
    net = small_net(len(spatial), channels, seed=0)
    image = torch.rand(1, *spatial, generator=torch.Generator().manual_seed(1))

    optimizers = []

    def make_optimizer(params):
        optimizers.append(RecordingSGD(params, LR))
        return optimizers[0]

    _, record = refine_with_topology(
        net, image, lambda_topo=LAMBDA, iterations=2, optimizer=make_optimizer, stop_when_satisfied=False, **kwargs
    )

    reference_net = copy.deepcopy(net)
    with torch.no_grad():
        reference = activation(reference_net(image[None])[0])
    optimizer = torch.optim.SGD(reference_net.parameters(), lr=LR)
    for step in range(2):
        probs = activation(reference_net(image[None])[0])
        loss = eq5(probs, reference, scored(probs), LAMBDA)
        optimizer.zero_grad()
        loss.backward()
        assert record["loss"][step] == pytest.approx(loss.item(), rel=1e-5, abs=1e-7), f"step {step}"
        for ours, theirs in zip(optimizers[0].grads[step], [p.grad for p in reference_net.parameters()]):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
        optimizer.step()
    assert record["loss"][1] > 0 and record["iterations"] == 2


def test_the_topological_term_is_not_computed_on_a_twice_activated_map():
    """The defect this guards against: sigmoid(sigmoid(z)) has bars no longer than 0.23."""
    net = small_net(2, 1, seed=2)
    image = torch.rand(1, 12, 12, generator=torch.Generator().manual_seed(3))
    _, record = refine_with_topology(net, image, (1, 1), lambda_topo=1.0, iterations=1, stop_when_satisfied=False)
    with torch.no_grad():
        probs = torch.sigmoid(net(image[None])[0])
    once = float(eq5(probs, probs, [(probs[0], (1, 1))], 1.0))
    twice = float(eq5(torch.sigmoid(probs), torch.sigmoid(probs), [(torch.sigmoid(probs)[0], (1, 1))], 1.0))
    assert record["loss"][0] == pytest.approx(once, rel=1e-5)
    assert abs(once - twice) > 1e-3
