"""Eq. 3-5 of Clough et al. written straight from the paper, with gudhi for the diagrams (test reference).

Nothing here uses monai_topo: the tests hold the package's losses, refinement and trainer
against these few lines.
"""

import gudhi
import numpy as np
import torch


def superlevel_bars(prob: torch.Tensor, maxdim: int) -> list[torch.Tensor]:
    """Bar lengths ``b - d`` per homology dimension of the super-level filtration of ``prob``
    (pixels as top cells, i.e. 8/26-connected foreground), gathered from ``prob`` so autograd
    reaches the critical pixels. The essential component dies at 0."""
    values = prob.detach().double().cpu().numpy()
    # gudhi filters by sub-level sets and reads its array in Fortran order: the transpose of
    # -prob makes its cell indices the C-order indices of prob.
    complex_ = gudhi.CubicalComplex(top_dimensional_cells=(-values).T)
    complex_.compute_persistence(homology_coeff_field=2, min_persistence=0)
    regular, essential = complex_.cofaces_of_persistence_pairs()
    flat = prob.reshape(-1)
    lengths = []
    for k in range(maxdim + 1):
        bars = []
        if k < len(regular) and len(regular[k]):
            pairs = torch.as_tensor(regular[k], dtype=torch.long)
            bars.append(flat[pairs[:, 0]] - flat[pairs[:, 1]])
        if k < len(essential) and len(essential[k]):
            bars.append(flat[torch.as_tensor(essential[k], dtype=torch.long)])
        length = torch.cat(bars) if bars else flat.new_zeros(0)
        lengths.append(length[length.detach() > 0])
    return lengths


def eq3(prob: torch.Tensor, prior) -> torch.Tensor:
    """Eq. 3-4: the ``β*_k`` longest bars of dimension ``k`` pushed to 1, all others to 0.

    ``prior`` entries are exact counts or ``(min, max)`` pairs (``max`` None: no limit).
    """
    total = prob.new_zeros(())
    for k, (bars, entry) in enumerate(zip(superlevel_bars(prob, len(prior) - 1), prior)):
        low, high = entry if isinstance(entry, (tuple, list)) else (entry, entry)
        ranked = torch.sort(bars, descending=True).values
        total = total + (1 - ranked[:low] ** 2).sum() + max(0, low - len(ranked))
        if high is not None:
            total = total + (ranked[high:] ** 2).sum()
    return total


def eq5(probs: torch.Tensor, reference: torch.Tensor, scored: list[tuple[torch.Tensor, tuple]], lam: float):
    """Eq. 5: ``(1/V)|f(X; w) - f(X; w_n)|² + λ L_topo`` for one item ``(C, *spatial)``, with the
    topological term summed over ``scored``, a list of ``(map, prior)``."""
    voxels = probs[0].numel()
    return ((probs - reference) ** 2).sum() / voxels + lam * sum(eq3(m, p) for m, p in scored)


def betti_2d(mask: np.ndarray) -> tuple[int, int]:
    """(β0, β1) of a 2D mask with 8-connected foreground: components, and 4-connected background
    components that do not reach the border."""
    from scipy import ndimage

    beta0 = ndimage.label(mask, structure=np.ones((3, 3)))[1]
    background, count = ndimage.label(np.pad(~mask, 1, constant_values=True))
    return int(beta0), int(count - 1)
