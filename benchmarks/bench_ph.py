"""Persistent homology with critical cells: monai_topo against gudhi and CubicalRipser, in one process.

Times, side by side, on the same probability maps:

- ``gudhi``: ``gudhi.CubicalComplex(top_dimensional_cells=-x)`` + ``compute_persistence`` +
  ``cofaces_of_persistence_pairs``, one image at a time (the critical cells, as we need them);
- ``cripser``: ``cripser.computePH_T(-x, location="yes")``, one image at a time;
- ``monai_topo.ph.batch_persistence`` on the whole ``(B, 1, *spatial)`` batch with each backend
  and with ``"auto"`` (diagram objects with differentiable births/deaths included).

Connectivity ``"full"`` (T-construction) throughout, all homology dimensions. Each workload is a
"noisy" map (a smooth ring/torus plus spatially correlated noise: thousands of bars) and a
"clean" one (the smooth shape alone, with plateaus at 0 and 1). Every engine is warmed up first
(numba loads or compiles its kernels on the first call; that time is reported separately).
Cells are medians of ``--repeats`` runs: one run where a run exceeds ``SLOW_RUN_S``, up to ten
times more where they take less than ``BRIEF_CELL_S`` in all. Cells compared side by side are
timed in turns (``median_times``).

Peak memory (3D workloads): growth of the resident set size above its value before the call,
sampled every millisecond from ``/proc/self/statm`` by a thread while the engine runs (all
engines release the GIL; free heap memory is returned to the system with ``malloc_trim``
before each measurement). It counts what C++ and numba allocate, which ``tracemalloc`` cannot see.

Usage::

    python benchmarks/bench_ph.py                  # default size (about 4 minutes on 2 cores)
    python benchmarks/bench_ph.py --size full      # the issue's full list (about 15 minutes)
    python benchmarks/bench_ph.py --size smoke     # seconds; what CI runs

A last table compares PH of the maps pooled by 2 (``monai_topo.ph.downsampled_persistence``)
with full resolution: Betti numbers at 0.5 and speed-up.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cripser
import gudhi
import numba
import numpy as np
import torch
from scipy import ndimage

from monai_topo.ph import batch_persistence, unionfind
from monai_topo.ph.downsample import POOLING_MODES, downsampled_persistence

# (name, batch shape (B, *spatial)); dims 0..ndim-1 are computed.
SIZES = {
    "smoke": [("2D", (6, 24, 24)), ("3D", (1, 10, 14, 12))],
    "default": [("2D", (100, 80, 80)), ("2D", (16, 256, 256)), ("3D", (1, 64, 128, 128))],
    "full": [
        ("2D", (100, 80, 80)),
        ("2D", (16, 256, 256)),
        ("2D", (16, 512, 512)),
        ("3D", (1, 64, 128, 128)),
        ("3D", (1, 96, 240, 256)),
    ],
}
MAPS = ("noisy", "clean")
API_BACKENDS = ("gudhi", "cripser", "unionfind", "auto")
SLOW_RUN_S = 20.0
BRIEF_CELL_S = 1.0


def probability_maps(batch_shape: Sequence[int], noisy: bool, seed: int = 0) -> np.ndarray:
    """A float32 stack of smooth rings (2D) / tori (3D), with correlated noise when ``noisy``.

    Examples
    --------
    >>> probability_maps((2, 16, 16), noisy=True).shape
    (2, 16, 16)
    """
    rng = np.random.default_rng(seed)
    n, *spatial = batch_shape
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in spatial], indexing="ij")
    in_plane = np.hypot(grids[-2], grids[-1])
    # Distance to a circle of radius 0.55 in the last two axes (a torus in 3D).
    distance = np.hypot(in_plane - 0.55, grids[0]) if len(spatial) == 3 else np.abs(in_plane - 0.55)
    shape = 1 / (1 + np.exp((distance - 0.2) / 0.03))
    maps = np.empty((n, *spatial), np.float32)
    for i in range(n):
        item = shape
        if noisy:
            noise = ndimage.gaussian_filter(rng.standard_normal(spatial), sigma=2)
            item = shape + 0.3 * noise / noise.std()
        maps[i] = np.clip(item, 0, 1)
    return maps


def gudhi_one_at_a_time(maps: np.ndarray) -> int:
    bars = 0
    for image in maps:
        complex_ = gudhi.CubicalComplex(top_dimensional_cells=np.negative(image, dtype=np.float64))
        complex_.compute_persistence(homology_coeff_field=2, min_persistence=0)
        regular, essential = complex_.cofaces_of_persistence_pairs()
        bars += sum(len(pairs) for pairs in regular) + sum(len(cells) for cells in essential)
    return bars


def cripser_one_at_a_time(maps: np.ndarray) -> int:
    bars = 0
    for image in maps:
        bars += len(cripser.computePH_T(np.negative(image, dtype=np.float64), maxdim=image.ndim - 1, location="yes"))
    return bars


def api(backend: str) -> Callable[[np.ndarray], int]:
    def run(maps: np.ndarray) -> int:
        diagrams = batch_persistence(torch.from_numpy(maps)[:, None], backend=backend)
        return sum(len(item[0]) for item in diagrams)

    run.__name__ = f"batch_persistence[{backend}]"
    return run


ENGINES: dict[str, Callable[[np.ndarray], int]] = {
    "gudhi": gudhi_one_at_a_time,
    "cripser": cripser_one_at_a_time,
    **{f"api:{backend}": api(backend) for backend in API_BACKENDS},
}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory_mb(run: Callable[[], object]) -> float:
    """Peak growth of the resident set (MB) while ``run()`` executes; NaN where /proc is missing."""
    if not os.path.exists("/proc/self/statm"):
        return float("nan")
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    baseline = _rss_bytes()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return (max(peak[0], _rss_bytes()) - baseline) / 2**20


def median_time(run: Callable[[], object], repeats: int) -> tuple[float, int]:
    """Median wall time of ``repeats`` runs, and how many were made.

    A single run when one exceeds ``SLOW_RUN_S``; more runs (up to ten times as many) while they
    add up to less than ``BRIEF_CELL_S``, so that millisecond cells are not at the mercy of one
    hiccup of a shared machine.
    """
    times: list[float] = []
    while len(times) < repeats or (sum(times) < BRIEF_CELL_S and len(times) < 10 * repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
        if times[-1] > SLOW_RUN_S:
            break
    return statistics.median(times), len(times)


def median_times(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, int]]:
    """:func:`median_time` of several runs taken in turns (one of each, then again), so that a
    shared machine's slow and fast spells fall on all of them alike: what a side-by-side ratio
    needs. Returns ``{name: (median seconds, runs)}``.

    Examples
    --------
    >>> sorted(median_times({"a": lambda: None, "b": lambda: None}, 2))
    ['a', 'b']
    """
    times: dict[str, list[float]] = {name: [] for name in runs}

    def rounds() -> int:
        return len(next(iter(times.values())))

    while rounds() < repeats or (sum(map(sum, times.values())) < BRIEF_CELL_S and rounds() < 10 * repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
        if max(times[name][-1] for name in runs) > SLOW_RUN_S:
            break
    return {name: (statistics.median(t), len(t)) for name, t in times.items()}


def warm_up() -> dict[str, float]:
    """Run every engine once on tiny 2D and 3D inputs; returns the seconds of each first call."""
    first_call = {}
    for name, engine in ENGINES.items():
        start = time.perf_counter()
        for shape in ((2, 9, 9), (1, 5, 6, 7)):
            engine(probability_maps(shape, noisy=True))
        first_call[name] = time.perf_counter() - start
    stage_times(probability_maps((1, 5, 6, 7), noisy=True)[0])
    return first_call


def stage_times(volume: np.ndarray) -> dict[str, float]:
    """Seconds of each serial stage of the union-find engine on one 3D volume ("full"), and of numpy.argsort."""
    x = volume.reshape(-1)
    shape = volume.shape
    timings = {}

    def timed(name: str, function: Callable, *args):
        start = time.perf_counter()
        result = function(*args)
        timings[name] = time.perf_counter() - start
        return result

    timed("numpy.argsort", np.argsort, x)
    ties = timed("plateau order", unionfind.plateau_order, x, shape, True)
    order = timed("sort (radix)", unionfind.descending_order, x, ties)
    prepared = unionfind.Prepared(order, *timed("positions", unionfind.padded_positions, order, shape),
                                  np.int64(order[0]))
    marks = unionfind.new_edge_marks(prepared.forward, shape, 2)
    ascents = unionfind.new_ascents(prepared)
    forward, reverse = timed("sweeps: first pass", unionfind.first_pass, prepared, shape, True, ascents, marks, 0,
                             shape[0] * shape[1])
    timed("union-find dim 0", unionfind.saddle_pass, x, prepared, shape, True, False, ascents, forward, marks)
    timed("union-find dim 2 (dual)", unionfind.saddle_pass, x, prepared, shape, True, True, ascents, reverse, marks)
    candidates = timed("dim 1 apparent pairs", unionfind.middle_candidates, prepared, shape, True, marks, 0, shape[0] + 2)
    timed("dim 1 reduction", unionfind.middle_reduction, x, prepared, shape, True, candidates)
    timings["columns reduced"] = float(len(candidates))
    return timings


def downsampling_accuracy(maps: np.ndarray, repeats: int) -> list[dict]:
    """Betti numbers at 0.5 and time of PH on the maps pooled by 2, against full resolution."""
    x = torch.from_numpy(maps)[:, None]
    full_res = [item[0].betti(0.5) for item in batch_persistence(x)]
    full_time = median_time(lambda: batch_persistence(x), repeats)[0]
    rows = []
    for mode in POOLING_MODES:
        pooled = [item[0].betti(0.5) for item in downsampled_persistence(x, 2, mode)]
        errors = np.abs(np.array(pooled) - np.array(full_res))
        rows.append({
            "mode": mode,
            "same betti": float(np.mean([a == b for a, b in zip(pooled, full_res)])),
            "mean |error|": errors.mean(axis=0).tolist(),
            "betti full": np.mean(full_res, axis=0).tolist(),
            "betti pooled": np.mean(pooled, axis=0).tolist(),
            "speed-up": full_time / median_time(lambda: downsampled_persistence(x, 2, mode), repeats)[0],
        })
    return rows


def run_benchmark(size: str, repeats: int, memory: bool) -> dict:
    """Time every engine on every workload of ``size``; returns rows of plain numbers."""
    results = {"first_call": warm_up(), "rows": [], "stages": [], "downsample": []}
    for kind, batch_shape in SIZES[size]:
        for noisy in (True, False):
            maps = probability_maps(batch_shape, noisy)
            row = {"workload": f"{kind} {'×'.join(map(str, batch_shape))}", "map": MAPS[0] if noisy else MAPS[1]}
            row["bars"] = statistics.median(len(d[0]) for d in batch_persistence(torch.from_numpy(maps)[:, None]))
            for name, engine in ENGINES.items():
                row[name], row[f"{name} runs"] = median_time(lambda: engine(maps), repeats)
                if memory and kind == "3D" and name in ("gudhi", "cripser", "api:auto"):
                    row[f"{name} MB"] = peak_memory_mb(lambda: engine(maps))
            results["rows"].append(row)
            if kind == "3D":
                results["stages"].append({"workload": row["workload"], "map": row["map"], **stage_times(maps[0])})
            for accuracy in downsampling_accuracy(maps, repeats):
                results["downsample"].append({"workload": row["workload"], "map": row["map"], **accuracy})
            print(f"done: {row['workload']} {row['map']}", file=sys.stderr, flush=True)
    return results


def _numbers(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"


def _seconds(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def markdown(results: dict) -> str:
    """The results as markdown tables."""
    rows = results["rows"]
    names = list(ENGINES)
    lines = [
        "| workload | map | bars/img | " + " | ".join(names) + " | auto vs gudhi | auto / cripser | min runs |",
        "|---|---|---:|" + "---:|" * len(names) + "---:|---:|---:|",
    ]
    for row in rows:
        cells = [_seconds(row[name]) for name in names]
        runs = min(row[f"{name} runs"] for name in names)
        lines.append(
            f"| {row['workload']} | {row['map']} | {row['bars']:.0f} | " + " | ".join(cells)
            + f" | {row['gudhi'] / row['api:auto']:.1f}× | {row['api:auto'] / row['cripser']:.2f} | {runs} |"
        )
    memory_rows = [row for row in rows if "api:auto MB" in row]
    if memory_rows:
        lines += ["", "Peak RSS growth during the call (MB):", "",
                  "| workload | map | gudhi | cripser | auto |", "|---|---|---:|---:|---:|"]
        lines += [
            f"| {row['workload']} | {row['map']} | {row['gudhi MB']:.0f} | {row['cripser MB']:.0f} | {row['api:auto MB']:.0f} |"
            for row in memory_rows
        ]
    if results["stages"]:
        stage_names = [k for k in results["stages"][0] if k not in ("workload", "map", "columns reduced")]
        lines += ["", "Union-find engine, one thread, stage by stage (s), against numpy.argsort of the volume:", "",
                  "| workload | map | " + " | ".join(stage_names) + " | stages total | columns reduced |",
                  "|---|---|" + "---:|" * (len(stage_names) + 2)]
        for stage in results["stages"]:
            total = sum(stage[k] for k in stage_names if k != "numpy.argsort")
            lines.append(
                f"| {stage['workload']} | {stage['map']} | " + " | ".join(_seconds(stage[k]) for k in stage_names)
                + f" | {_seconds(total)} | {stage['columns reduced']:.0f} |"
            )
    if results["downsample"]:
        lines += ["", "PH of the map pooled by 2 (monai_topo.ph.downsample), against full resolution: Betti numbers "
                  "of {x >= 0.5} from the diagrams (mean per image), share of images with all Betti numbers equal, "
                  "mean absolute error per dimension, speed-up of batch_persistence:", "",
                  "| workload | map | pooling | betti full | betti pooled | same betti | mean abs error | speed-up |",
                  "|---|---|---|---|---|---:|---|---:|"]
        for row in results["downsample"]:
            lines.append(
                f"| {row['workload']} | {row['map']} | {row['mode']} | {_numbers(row['betti full'])} | "
                f"{_numbers(row['betti pooled'])} | {row['same betti']:.0%} | {_numbers(row['mean |error|'])} | "
                f"{row['speed-up']:.1f}× |"
            )
    first = results["first_call"]
    lines += ["", "First call (numba cache load or compile, libraries' setup), excluded above (s): "
              + ", ".join(f"{name} {first[name]:.2f}" for name in names)]
    return "\n".join(lines)


def publish(report: str, out: str | None) -> None:
    """Print a benchmark's report, and write it to ``out`` too where given."""
    print(report)
    if out:
        Path(out).write_text(report)


def machine() -> str:
    """CPU model and core count, for the record."""
    model = platform.processor() or "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", load average %.1f / %.1f / %.1f (1 / 5 / 15 min)" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    return (f"{model}, {cores} cores available{load}; torch {torch.__version__}, gudhi {gudhi.__version__}, "
            f"cripser {cripser.__version__}, numba {numba.__version__}")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark from the command line; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=list(SIZES), default="default")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cell (median)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs of the 3D workloads")
    parser.add_argument("--out", help="also write the markdown tables to this file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    started = machine()
    results = run_benchmark(args.size, args.repeats, memory=not args.no_memory)
    report = f"Machine at the start: {started}\nMachine at the end: {machine()}\n\n{markdown(results)}\n"
    publish(report, args.out)
    return results


if __name__ == "__main__":
    main()
