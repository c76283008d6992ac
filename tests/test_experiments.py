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
    CHECKS.get(name, lambda text: None)(table)


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    """The cells of the markdown rows of ``text`` whose first cell is ``first_cell``."""
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    return [row for row in rows if row[0] == first_cell]


def check_blob3d(text: str) -> None:
    """Both refinement modes ran on the placenta volume and all four organs were scored; the package's β0 of
    every mask equals scipy's independent count of 26-connected components (the table's last columns)."""
    rows = table_rows(text, "0")  # the smoke run has one volume of each kind
    placenta = [row for row in rows if row[1] in ("whole network", "tail (refine_last=7)")]
    organs = [row for row in rows if row[1] in ("spleen", "kidney (label 2)", "kidney (label 3)", "liver")]
    assert len(placenta) == 2 and len(organs) == 4
    for row in placenta + organs:
        betti_before, betti_after = (tuple(int(b) for b in cell.strip("()").split(",")) for cell in row[4:6])
        assert (betti_before[0], betti_after[0]) == (int(row[6]), int(row[7])), row


CHECKS = {"blob3d_postprocess": check_blob3d}
