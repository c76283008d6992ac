"""What the numba engines need from the host: checked numpy copies of the maps, and their threads.

Shared by every caller of the engines (:mod:`monai_topo.ph.persistence`, the union-find batch
driver, the Betti matching loss), so that they check inputs and share threads the same way.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from monai_topo.threads import ph_num_threads
from monai_topo.validation import check_int


def probability_values(x: torch.Tensor, name: str) -> np.ndarray:
    """The values of ``x`` as a C-contiguous float32/float64 numpy array (a view when possible), checked.

    The checks run in numpy on the host copy that the engines need anyway: one pass each, and no
    torch thread pool (which is slow to wake when the cores are shared).

    Examples
    --------
    >>> probability_values(torch.tensor([0.5, 1.0]), "prediction")
    array([0.5, 1. ], dtype=float32)
    >>> probability_values(torch.tensor([-1.0]), "prediction")
    Traceback (most recent call last):
    ...
    ValueError: prediction must hold probabilities (values >= 0), got minimum -1; apply torch.sigmoid or torch.softmax to logits first.
    """
    values = x.detach().cpu()
    if values.dtype not in (torch.float32, torch.float64):
        values = values.float()  # numpy has no bfloat16; the conversion keeps the order of values
    values = np.ascontiguousarray(values.numpy())
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or Inf values.")
    minimum = values.min()
    if minimum < 0:
        raise ValueError(
            f"{name} must hold probabilities (values >= 0), got minimum {float(minimum):.4g}; "
            "apply torch.sigmoid or torch.softmax to logits first."
        )
    return values


def resolve_workers(num_workers: int | None) -> int:
    """Threads for an engine call: ``num_workers``, checked, or the package's thread policy.

    >>> resolve_workers(2)
    2
    """
    if num_workers is None:
        return ph_num_threads()  # the package's thread policy: as many as torch uses
    return check_int(num_workers, "num_workers", minimum=1)


def thread_pool(workers: int) -> ThreadPoolExecutor:
    """A lasting pool of ``workers`` threads for this process: starting threads on every call costs
    more than a small batch.

    >>> thread_pool(2) is thread_pool(2)
    True
    """
    return _pool(workers, os.getpid())


@functools.cache
def _pool(workers: int, pid: int) -> ThreadPoolExecutor:
    # Keyed by process id as well: a forked child (a data-loader worker) inherits the pool object
    # but not its threads, and would wait forever on it.
    return ThreadPoolExecutor(workers, thread_name_prefix="monai_topo_ph")
