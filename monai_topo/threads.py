"""One thread policy for the package: torch's intra-op threads and the PH engine's thread pool.

The persistent-homology engine runs between torch operations, never beside them, so it uses as
many threads as torch does (:func:`ph_num_threads`): a process that gives torch one thread (a
DataLoader worker, one ``torchrun`` rank of several, ``OMP_NUM_THREADS=1``) gets a one-thread PH
too, and the two never ask for more cores than the process was given. The environment variable
``MONAI_TOPO_NUM_THREADS`` overrides both.

Entry points that own their process (the CLI, the bundles' configs) call
:func:`configure_threads`, which gives torch the cores this process can expect to have to itself:
the cores it may run on, shared among the ``torchrun`` ranks of this node (``LOCAL_WORLD_SIZE``),
less those kept busy by other processes (tasks runnable right now, read a few times). On a shared machine,
threads beyond the free cores wait for each other at every parallel region: measured with one of
two cores busy, 30 Eq. 5 steps on a 64×64 slice took four times longer with two threads than with
one (docs/benchmarks.md). A library user keeps torch's own setting unless they call it.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

ENV_VAR = "MONAI_TOPO_NUM_THREADS"
"""Environment variable fixing the number of threads of torch and of the PH engine."""


def _available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _env_threads() -> int | None:
    value = os.environ.get(ENV_VAR)
    if value is None or value.strip() == "":
        return None
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"{ENV_VAR} must be a positive integer, got {value!r}; unset it to use the default.")
    return threads


def ph_num_threads() -> int:
    """Threads of the PH engine when a caller passes ``num_workers=None``.

    ``MONAI_TOPO_NUM_THREADS`` if set, else ``torch.get_num_threads()``, at most the cores this
    process may run on.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.threads import ph_num_threads
    >>> ph_num_threads() <= max(1, torch.get_num_threads())
    True
    """
    threads = _env_threads() or torch.get_num_threads()
    return max(1, min(threads, _available_cores()))


def busy_cores() -> float:
    """Cores kept busy by other processes: the median of a few readings of the runnable tasks
    (Linux ``/proc/stat``), less this process; elsewhere the one-minute load average.

    Examples
    --------
    >>> from monai_topo.threads import busy_cores
    >>> busy_cores() >= 0
    True
    """
    try:
        readings = []
        for _ in range(5):
            with open("/proc/stat") as stat:
                running = next(line for line in stat if line.startswith("procs_running"))
            readings.append(int(running.split()[1]) - 1)
            time.sleep(0.01)
        return float(statistics.median(readings))
    except (OSError, StopIteration, ValueError):
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0


def default_num_threads() -> int:
    """Threads this process can expect to have to itself (see the module's description).

    The cores it may run on divided among the local ``torchrun`` ranks (``LOCAL_WORLD_SIZE``),
    less the cores that other processes keep busy (shared among the ranks), at least 1.

    Examples
    --------
    >>> from monai_topo.threads import default_num_threads
    >>> default_num_threads() >= 1
    True
    """
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    cores = _available_cores()
    # The other ranks of this job are among the busy tasks once they run; count them once.
    busy = max(0.0, busy_cores() - (ranks - 1))
    return max(1, min(cores // ranks, int((cores - busy) // ranks)))


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads (and so the PH engine's) for this process; returns the number.

    ``num_threads`` if given, else ``MONAI_TOPO_NUM_THREADS`` if set, else
    :func:`default_num_threads`.

    Examples
    --------
    >>> import torch
    >>> from monai_topo.threads import configure_threads
    >>> before = torch.get_num_threads()
    >>> configure_threads(1), torch.get_num_threads()
    (1, 1)
    >>> _ = configure_threads(before)
    """
    if num_threads is None:
        num_threads = _env_threads() or default_num_threads()
    elif isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive int or None (the default policy), got {num_threads!r}.")
    torch.set_num_threads(num_threads)
    return num_threads
