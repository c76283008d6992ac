import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# One torch (and so PH) thread per test process, and for the processes the tests start: on a machine
# shared with other jobs, a second thread waits for a free core at every parallel region, which made
# small-network tests tens of times slower (benchmarks/bench_threads.py). Tests check results, not speed;
# the thread-policy tests set their own numbers.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The team's real data folder (../shared/data); tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not found")
    return SHARED_DATA
