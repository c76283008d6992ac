"""The thread policy on an idle machine and with one core kept busy: refinement and ``monai-topo infer``.

Times, for each load ("idle", then "one core busy", where this script keeps one core busy with a
spinning child process) and each setting ("torch on every core", the behaviour before the policy,
then ``monai_topo.threads.configure_threads()``, the policy):

- 30 Eq. 5 steps of ``refine_with_topology`` on a 2D slice with the cardiac bundle's U-Net;
- Eq. 5 steps on a 3D volume with the placenta bundle's U-Net;
- ``monai-topo infer`` (a fresh process: import, bundle, every case with its Eq. 5 refinement, the
  report) on a folder of 2D phantoms with the cardiac bundle's shipped weights, "before" being
  ``--threads <every core>``.

The networks are freshly initialised: only the time matters here, every run does the same steps.

Usage::

    python benchmarks/bench_threads.py                # default size (a few minutes on 2 cores)
    python benchmarks/bench_threads.py --size smoke   # seconds; what CI runs
    python benchmarks/bench_threads.py --loads idle   # skip the busy-core column
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ph import machine, median_time, publish  # noqa: E402
from bench_training import bundle_network  # noqa: E402

from monai_topo.data import myocardium_phantom, placenta_phantom  # noqa: E402
from monai_topo.threads import busy_cores, configure_threads  # noqa: E402
from monai_topo.transforms import refine_with_topology  # noqa: E402

SIZES = {
    "smoke": {"slice": 32, "steps_2d": 3, "volume": (24, 24, 24), "steps_3d": 2, "infer_cases": 1, "refine": False},
    "default": {"slice": 64, "steps_2d": 30, "volume": (32, 48, 48), "steps_3d": 10, "infer_cases": 2, "refine": True},
}
LOADS = ("idle", "one core busy")
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
SETTINGS = {"torch on every core (before)": CORES, "configure_threads() (after)": None}


@contextlib.contextmanager
def load(name: str) -> Iterator[None]:
    """Keep one core busy with a spinning child process while the block runs (for "one core busy")."""
    if name == "idle":
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let the scheduler see it before configure_threads() looks
        yield
    finally:
        spinner.kill()
        spinner.wait()


def _refinement(size: dict) -> dict:
    torch.manual_seed(0)
    slice_net = bundle_network("cardiac_myocardium_topo").eval()
    volume_net = bundle_network("placenta_topo").eval()
    image_2d = torch.from_numpy(myocardium_phantom(size["slice"], rng=0)[0])[None]
    image_3d = torch.from_numpy(placenta_phantom(size["volume"], rng=0)[0])[None]
    return {
        f"Eq. 5, {size['steps_2d']} steps, 2D {size['slice']}×{size['slice']}": lambda: refine_with_topology(
            slice_net, image_2d, (1, 1), iterations=size["steps_2d"], stop_when_satisfied=False),
        f"Eq. 5, {size['steps_3d']} steps, 3D {'×'.join(map(str, size['volume']))}": lambda: refine_with_topology(
            volume_net, image_3d, (1, 0, 0), lambda_topo=0.005, iterations=size["steps_3d"],
            stop_when_satisfied=False),
    }


def _infer_command(inputs: Path, output: Path, threads: int | None, refine: bool) -> list[str]:
    command = [sys.executable, "-m", "monai_topo.cli", "infer", "--bundle", "cardiac_myocardium_topo",
               "--input", str(inputs), "--output", str(output), "--device", "cpu", "--overwrite", "--quiet"]
    return command + ([] if threads is None else ["--threads", str(threads)]) + ([] if refine else ["--no-postprocess"])


def _write_cases(folder: Path, size: dict) -> None:
    affine = np.diag([1.5, 1.5, 1.0, 1.0])
    for k in range(size["infer_cases"]):
        image = myocardium_phantom(size["slice"], rng=k)[0]
        nib.save(nib.Nifti1Image(image.astype(np.float32), affine), folder / f"case{k}.nii.gz")


def rows(size: dict, loads: Sequence[str], repeats: int) -> list[dict]:
    results = []
    work = _refinement(size)
    threads_before = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        _write_cases(inputs, size)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                            os.environ.get("PYTHONPATH", "")])}
        for load_name in loads:
            with load(load_name):
                for setting, threads in SETTINGS.items():
                    used = configure_threads(threads)
                    busy = busy_cores()
                    for task, run in work.items():
                        run()  # warm-up
                        seconds, runs = median_time(run, repeats)
                        results.append({"task": task, "load": load_name, "setting": setting, "threads": used,
                                        "seconds": seconds, "runs": runs, "busy cores": busy})
                    command = _infer_command(inputs, Path(tmp) / "out", threads, size["refine"])

                    def infer(command=command):
                        subprocess.run(command, check=True, env=env, capture_output=True)

                    seconds, runs = median_time(infer, 1)
                    results.append({"task": f"monai-topo infer, {size['infer_cases']} cases "
                                            f"{size['slice']}×{size['slice']}{'' if size['refine'] else ', no Eq. 5'} (process included)",
                                    "load": load_name, "setting": setting,
                                    "threads": threads if threads is not None else "policy",
                                    "seconds": seconds, "runs": runs, "busy cores": busy})
                    print(results[-1], file=sys.stderr, flush=True)  # progress of a long run
    torch.set_num_threads(threads_before)
    return results


def markdown(results: list[dict]) -> str:
    lines = ["| task | load | setting | threads | seconds | runs | busy cores seen |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['load']} | {r['setting']} | {r['threads']} | {r['seconds']:.2f} | {r['runs']} "
              f"| {r['busy cores']:.0f} |" for r in sorted(results, key=lambda r: (r["task"], r["load"]))]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="default")
    parser.add_argument("--loads", nargs="+", choices=LOADS, default=list(LOADS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = rows(SIZES[args.size], args.loads, args.repeats)
    report = (f"Machine: {machine()}; {CORES} cores\n\n{markdown(results)}\n\n"
              f"(total {time.perf_counter() - start:.0f} s)\n")
    publish(report, args.out)
    return results


if __name__ == "__main__":
    main()
