"""The package's thread policy: the PH pool follows torch's threads, one setting overrides both."""

import os

import pytest
import torch

from monai_topo import threads
from monai_topo.ph import backends, batch_persistence


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_ph_pool_follows_torch_threads(torch_threads, monkeypatch):
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    seen = []
    original = backends.unionfind.batch_pairs

    def spy(images, maxdim, full, num_workers):
        seen.append(num_workers)
        return original(images, maxdim, full, num_workers)

    monkeypatch.setattr(backends.unionfind, "batch_pairs", spy)
    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    torch.set_num_threads(1)
    batch_persistence(x)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(2)
    batch_persistence(x)
    monkeypatch.setenv(threads.ENV_VAR, "1")
    batch_persistence(x)
    batch_persistence(x, num_workers=2)  # an explicit value wins
    assert seen == [1, min(2, cores), 1, 2]


def test_configure_threads_reads_the_setting(torch_threads, monkeypatch):
    monkeypatch.setenv(threads.ENV_VAR, "1")
    assert threads.configure_threads() == 1 == torch.get_num_threads()
    monkeypatch.setenv(threads.ENV_VAR, "zero")
    with pytest.raises(ValueError, match="MONAI_TOPO_NUM_THREADS must be a positive integer"):
        threads.configure_threads()
    with pytest.raises(ValueError, match="num_threads must be a positive int"):
        threads.configure_threads(0)


def test_default_shares_free_cores_among_ranks(monkeypatch):
    monkeypatch.setattr(threads, "_available_cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_cores", lambda: 0.0)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert threads.default_num_threads() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setattr(threads, "busy_cores", lambda: 3.0)  # the three other ranks of this job
    assert threads.default_num_threads() == 2
    monkeypatch.setattr(threads, "busy_cores", lambda: 7.0)  # and four cores busy with other work
    assert threads.default_num_threads() == 1
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setattr(threads, "busy_cores", lambda: 1.0)  # one core of eight busy
    assert threads.default_num_threads() == 7
    monkeypatch.setattr(threads, "busy_cores", lambda: 20.0)
    assert threads.default_num_threads() == 1

