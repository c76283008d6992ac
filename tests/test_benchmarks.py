"""The benchmark scripts run end to end in their smoke size, so they cannot rot (no timing asserts)."""

import importlib.util
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_ph_smoke(tmp_path, capsys):
    bench = _load("bench_ph")
    out = tmp_path / "table.md"
    results = bench.main(["--size", "smoke", "--repeats", "1", "--out", str(out)])
    rows = results["rows"]
    assert [(row["workload"].split()[0], row["map"]) for row in rows] == [
        ("2D", "noisy"), ("2D", "clean"), ("3D", "noisy"), ("3D", "clean")
    ]
    for row in rows:
        assert row["bars"] >= 1
        assert all(row[name] > 0 for name in bench.ENGINES)
    assert all(np.isfinite(row["api:auto MB"]) for row in rows if row["workload"].startswith("3D"))
    assert len(results["stages"]) == 2
    assert [row["mode"] for row in results["downsample"]] == ["max", "avg"] * 4
    assert all(0 <= row["same betti"] <= 1 for row in results["downsample"])
    printed = capsys.readouterr().out
    assert "| workload | map |" in printed and "auto vs gudhi" in printed and "pooled by 2" in printed
    assert out.read_text().strip() == printed.strip()


def test_probability_maps_are_probabilities_with_many_bars_when_noisy():
    bench = _load("bench_ph")
    noisy = bench.probability_maps((2, 64, 64), noisy=True)
    clean = bench.probability_maps((2, 64, 64), noisy=False)
    assert noisy.dtype == np.float32 and noisy.min() >= 0 and noisy.max() <= 1
    assert not np.array_equal(noisy[0], noisy[1]) and np.array_equal(clean[0], clean[1])


def test_bench_threads_smoke(tmp_path, capsys):
    bench = _load("bench_threads")
    out = tmp_path / "table.md"
    rows = bench.main(["--size", "smoke", "--loads", "idle", "--repeats", "1", "--out", str(out)])
    assert [(row["load"], row["setting"]) for row in rows] == [
        ("idle", setting) for setting in bench.SETTINGS for _ in range(3)
    ]
    assert all(row["seconds"] > 0 for row in rows)
    assert rows[0]["threads"] == bench.CORES and rows[3]["threads"] >= 1
    printed = capsys.readouterr().out
    assert "| task | load | setting |" in printed and out.read_text().strip() == printed.strip()
