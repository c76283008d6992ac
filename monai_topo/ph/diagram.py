"""The persistence diagram of a super-level filtration, as differentiable torch tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from monai_topo.validation import check_int, check_number


@dataclass(frozen=True)
class PersistenceDiagram:
    """Bars of a super-level filtration with the pixels/voxels that create and destroy them.

    ``births`` and ``deaths`` are values of the input gathered at ``birth_index`` and
    ``death_index`` (flat C-order indices), so any function of them back-propagates into
    exactly those cells. Essential bars (the component that never dies) have ``death = 0``
    and ``death_index = -1``. Bars of zero length are not stored.

    Attributes
    ----------
    dims : torch.Tensor of int64, shape (n,)
        Homology dimension of each bar (0 components, 1 loops, 2 cavities).
    births, deaths : torch.Tensor, shape (n,)
        Filtration values where each bar starts and ends; ``births >= deaths``.
    birth_index, death_index : torch.Tensor of int64, shape (n,)
        Flat indices of the critical cells in the input.
    essential : torch.Tensor of bool, shape (n,)
        True for bars that never die inside the image.
    spatial_shape : tuple of int
        Shape of the image the diagram was computed from.
    maxdim : int
        Highest homology dimension computed.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.ph import cubical_persistence
    >>> x = torch.zeros(7, 7)
    >>> x[1:6, 1:6] = 0.9
    >>> x[3, 3] = 0.2
    >>> dgm = cubical_persistence(x)
    >>> dgm.betti(0.5)
    (1, 1)
    >>> dgm.lengths()
    tensor([0.9000, 0.7000])
    """

    dims: torch.Tensor
    births: torch.Tensor
    deaths: torch.Tensor
    birth_index: torch.Tensor
    death_index: torch.Tensor
    essential: torch.Tensor
    spatial_shape: tuple[int, ...]
    maxdim: int

    def __len__(self) -> int:
        return int(self.dims.numel())

    def lengths(self) -> torch.Tensor:
        """Bar lengths ``births - deaths`` (differentiable)."""
        return self.births - self.deaths

    def betti(self, threshold: float = 0.5) -> tuple[int, ...]:
        """Betti numbers ``(β0, ..., β_maxdim)`` of the super-level set ``{x >= threshold}``.

        ``threshold`` is a probability in [0, 1]; ``betti(0)`` is the whole image, one component.
        Anything else (NaN, a string, a bool, 50 meant as a percentage) raises an error rather
        than counting an empty set.
        """
        threshold = check_number(threshold, "threshold", 0, 1)
        # The essential class is cut at death 0 but never dies: at threshold 0 it is still alive.
        alive = (self.births >= threshold) & ((self.deaths < threshold) | self.essential)
        counts = torch.bincount(self.dims[alive], minlength=self.maxdim + 1)
        return tuple(int(c) for c in counts[: self.maxdim + 1])

    def in_dim(self, dim: int) -> "PersistenceDiagram":
        """The bars of homology dimension ``dim`` (0 to ``maxdim``) only."""
        keep = self.dims == check_int(dim, "dim", 0, self.maxdim)
        return PersistenceDiagram(
            self.dims[keep],
            self.births[keep],
            self.deaths[keep],
            self.birth_index[keep],
            self.death_index[keep],
            self.essential[keep],
            self.spatial_shape,
            self.maxdim,
        )

    def to_numpy(self) -> np.ndarray:
        """A plain ``(n, 3)`` float table of ``(dim, birth, death)``, like cripser's first columns."""
        return torch.stack(
            [self.dims.to(self.births.dtype), self.births.detach(), self.deaths.detach()], dim=1
        ).cpu().numpy()

    def __repr__(self) -> str:
        return (
            f"PersistenceDiagram({len(self)} bars, spatial_shape={self.spatial_shape}, "
            f"betti(0.5)={self.betti(0.5)})"
        )
