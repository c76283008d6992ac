"""Each reproduction script runs end to end at its smoke size and writes its table and figures."""

import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
FIGURES = {
    "mnist_denoising": ["digits.png", "barcodes.png", "ambiguous.png"],
    "myocardium_semisupervised": ["failures.png"],
    "blob3d_postprocess": ["slices.png"],
    "membranes_matching": ["predictions.png"],
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_experiment_smoke_run_writes_table_and_figures(name, shared_data, tmp_path):
    out = tmp_path / name
    subprocess.run(
        [sys.executable, "-W", "ignore", str(EXPERIMENTS / f"{name}.py"), "--smoke", "--out", str(out),
         "--data", str(shared_data)],
        check=True,
        cwd=EXPERIMENTS,
    )
    table = (out / "results.md").read_text()
    assert "Size: **smoke**" in table
    assert "|---|" in table  # at least one markdown table
    assert "Paper" in table  # every table is set against the paper's figures
    for figure in FIGURES[name]:
        assert (out / figure).stat().st_size > 0
