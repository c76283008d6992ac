"""benchmarks/bench_training.py runs end to end in its smoke size, so it cannot rot (no timing asserts)."""

import importlib.util
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_training.py"


def test_bench_training_smoke(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_training", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "table.md"
    threads = torch.get_num_threads()
    try:
        results = bench.main(["--size", "smoke", "--repeats", "1", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)  # main() applies the package's thread policy to its process
    ours = [row for row in results["losses"] if not row["loss"].startswith("topolosses")]
    assert len(ours) == 8 and all(row["seconds"] > 0 for row in ours)
    assert [row["step"].split()[0] for row in results["steps"]] == ["Dice", "Dice"]
    assert [row["items"] for row in results["refinement"]] == [1, 1]
    assert [row["mode"] for row in results["volumes"]] == list(bench.VOLUME_MODES)
    assert all(row["items"] == 1 and row["median s"] > 0 for row in results["volumes"])
    assert [row["step"].split()[0] for row in results["steps_3d"]] == ["Dice", "Dice"]
    printed = capsys.readouterr().out
    assert "Loss forward + backward" in printed and out.read_text().strip() == printed.strip()
