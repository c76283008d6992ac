"""The cardiac bundle's scripts/label_alignment.py finds a mask's known offset from its image."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bundles" / "cardiac_myocardium_topo" / "scripts" / "label_alignment.py"


@pytest.fixture(scope="module")
def alignment():
    spec = importlib.util.spec_from_file_location("label_alignment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cine_slice(rng):
    """Bright blood pool inside a dark myocardium ring on mid-grey tissue, with noise, and the ring's mask."""
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 31.3, xx - 32.6)
    ring = (r >= 10) & (r < 16)
    image = np.where(r < 10, 1.0, np.where(ring, 0.2, 0.5)) + rng.normal(0, 0.05, r.shape)
    return image, ring


@pytest.mark.parametrize("offset", [(0, 0), (1, 2), (-2, 1)])
def test_best_shift_undoes_a_known_offset(alignment, offset):
    image, ring = _cine_slice(np.random.default_rng(0))
    drawn = np.roll(ring, offset, (0, 1))  # a mask drawn `offset` pixels off the image
    shift, gain = alignment.best_shift(image, drawn, max_shift=3)
    assert shift == (-offset[0], -offset[1])
    assert (gain > 0) == (offset != (0, 0))
