"""Running one batch job on several processes started by ``torchrun``, with PyTorch's process groups."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist


@contextmanager
def process_group(device: torch.device) -> Iterator[tuple[int, int, torch.device]]:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1), initialise the default process
    group (``nccl`` for CUDA devices, each process on ``cuda:LOCAL_RANK``; ``gloo`` otherwise) and
    destroy it on exit. A group the caller initialised already is used and left alone. Without
    ``torchrun`` this is a single process of rank 0.

    Parameters
    ----------
    device : torch.device
        The device the job asked for.

    Yields
    ------
    tuple
        ``(rank, world_size, device)``, the device adjusted to the local rank for CUDA.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.inference.distributed import process_group
    >>> with process_group(torch.device("cpu")) as (rank, world_size, device):
    ...     rank, world_size, device.type
    (0, 1, 'cpu')
    """
    owned = False
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        owned = True
    try:
        if dist.is_initialized():
            yield dist.get_rank(), dist.get_world_size(), device
        else:
            yield 0, 1, device
    finally:
        if owned:
            dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (nothing to wait for in a single process)."""
    if dist.is_initialized():
        dist.barrier()


def all_gather(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not dist.is_initialized():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
