"""Losses, a training step and test-time refinement: what topology costs in training and inference.

Times, in one process:

- forward + backward of ``TopologicalPriorLoss``, ``PersistenceMatchingLoss`` and ``BettiMatchingLoss``
  (both connectivities) on a 2D batch and a 3D volume of noisy probability maps
  (``bench_ph.probability_maps``), side by side with topolosses' ``HutopoLoss`` / ``BettiMatchingLoss``
  (topology term only: ``use_base_loss=False``) on the same inputs, timed in turns (one run of
  each, then again), and the speed-up over them.
  topolosses is installed beside our stack with ``pip install --no-deps topolosses
  opencv-python-headless``; it declares torchvision, which has no CPU build for torch 2.13 and which
  only its ``MosinLoss`` imports, so the harness puts an empty stand-in module named ``torchvision``
  in ``sys.modules`` before importing it (the rows say "skipped" where it still does not import);
- one training step of the cardiac bundle's 2D U-Net (its ``network_def``) on a batch: Dice only vs
  Dice + λ·``TopologicalPriorLoss`` (λ = 0.01);
- ``refine_with_topology`` (the engine of ``TopologicalPostprocessd``) per 2D slice and per 3D volume
  until the prior holds, with the bundles' networks briefly trained on their phantoms;
- peak resident-memory growth of the 3D loss calls (see ``bench_ph.peak_memory_mb``).

Usage::

    python benchmarks/bench_training.py                 # default size (a few minutes on 2 cores)
    python benchmarks/bench_training.py --size full     # the issue's sizes (16×256×256, 96×240×256)
    python benchmarks/bench_training.py --size smoke    # seconds; what CI runs
    python benchmarks/bench_training.py --losses-only   # the loss rows only
    python benchmarks/bench_training.py --losses-only --loss-3d 96x240x256 --repeats 1 \
        --losses "BettiMatchingLoss (face)" "topolosses BettiMatchingLoss"   # one pair on a large volume
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import types
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.losses import DiceLoss
from monai.transforms import ScaleIntensityRangePercentiles

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ph import machine, median_time, median_times, publish, peak_memory_mb, probability_maps  # noqa: E402

from monai_topo.data import myocardium_phantom, placenta_phantom  # noqa: E402
from monai_topo.losses import BettiMatchingLoss, PersistenceMatchingLoss, TopologicalPriorLoss  # noqa: E402
from monai_topo.threads import configure_threads  # noqa: E402
from monai_topo.transforms import refine_with_topology  # noqa: E402

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
SIZES = {
    "smoke": {"loss_2d": (2, 24, 24), "loss_3d": (1, 10, 12, 12), "step": (2, 32, 32), "slice": 32,
              "volume": (24, 24, 24), "train_steps": 3, "refine_items": 1, "iterations": 3,
              "large_volumes": [(24, 32, 32)], "patch": (24, 32, 32), "large_items": 1, "volume_iterations": 2},
    "default": {"loss_2d": (16, 256, 256), "loss_3d": (1, 64, 128, 128), "step": (16, 128, 128), "slice": 64,
                "volume": (32, 48, 48), "train_steps": 150, "refine_items": 8, "iterations": 100,
                "large_volumes": [(64, 128, 128)], "patch": (48, 96, 96), "large_items": 4, "volume_iterations": 30},
    "full": {"loss_2d": (16, 256, 256), "loss_3d": (1, 96, 240, 256), "step": (16, 128, 128), "slice": 64,
             "volume": (32, 48, 48), "train_steps": 150, "refine_items": 8, "iterations": 100,
             "large_volumes": [(96, 240, 256)], "patch": (48, 96, 96), "large_items": 4, "volume_iterations": 30},
}
# Eq. 5 per volume, λ = 0.005 (the paper's placenta setting), Adam, stop once the output is one blob,
# with the placenta bundle's shipped weights (trained on 96×240×256 phantoms). The tail modes refine
# the last two decoder stages of its U-Net (7 parameterised layers) with the frozen part computed
# once, at 30 times the whole network's learning rate; "default" is refine_with_topology's defaults
# (for 3D items of 64×128×128 voxels or more: the region of interest, the PH floor and bfloat16);
# "default, lr 1e-3" is the placenta bundle's setting, beside the float32 whole network at that step.
VOLUME_MODES = {
    "whole network": {"roi_threshold": None, "amp": False},
    "ROI (roi_threshold=0.2)": {"roi_threshold": 0.2, "amp": False},
    "tail (refine_last=7)": {"refine_last": 7, "lr": 3e-3, "roi_threshold": None, "amp": False},
    "tail + ROI": {"refine_last": 7, "lr": 3e-3, "roi_threshold": 0.2, "amp": False},
    "tail + bfloat16": {"refine_last": 7, "lr": 3e-3, "roi_threshold": None, "amp": True},
    "default": {},
    "tail + defaults": {"refine_last": 7, "lr": 3e-3},
    "whole network, lr 1e-3": {"roi_threshold": None, "amp": False, "lr": 1e-3},
    "default, lr 1e-3": {"lr": 1e-3},
}


# our loss -> the topolosses loss it is timed against (the same construction: HutopoLoss matches
# diagrams as Hu et al.; topolosses' BettiMatchingLoss is Betti-Matching-3D, the V-construction)
PEERS = {"PersistenceMatchingLoss": "topolosses HutopoLoss",
         "BettiMatchingLoss (face)": "topolosses BettiMatchingLoss"}


def topolosses_losses() -> dict:
    """topolosses' losses (topology term only) where the package imports, else an empty dict (rows skipped).

    Only its MosinLoss imports torchvision, which has no CPU build for our torch: an empty stand-in
    module under that name lets the rest import.
    """
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
    try:
        from topolosses.losses import BettiMatchingLoss, HutopoLoss
    except Exception:  # noqa: BLE001 - any import failure means "not installable here"
        return {}
    options = {"use_base_loss": False, "alpha": 1.0, "include_background": True}
    return {"topolosses HutopoLoss": HutopoLoss(**options), "topolosses BettiMatchingLoss": BettiMatchingLoss(**options)}


def loss_rows(size: dict, repeats: int, names: Sequence[str] | None = None) -> list[dict]:
    """Rows of the loss timings; ``names``: only these losses (ours and topolosses'), default all."""
    losses = {
        "TopologicalPriorLoss": lambda ndim: TopologicalPriorLoss(prior=(1, 1) if ndim == 2 else (1, 0, 0)),
        "PersistenceMatchingLoss": lambda ndim: PersistenceMatchingLoss(),
        "BettiMatchingLoss (face)": lambda ndim: BettiMatchingLoss(connectivity="face"),
        "BettiMatchingLoss (full)": lambda ndim: BettiMatchingLoss(connectivity="full"),
    }
    peers = topolosses_losses()
    if names is not None:
        known = [*losses, "topolosses HutopoLoss", "topolosses BettiMatchingLoss"]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"--losses got unknown loss names {unknown}; choose from {known}.")
        losses = {name: make for name, make in losses.items() if name in names}
    rows = []
    for kind in ("loss_2d", "loss_3d"):
        shape = size[kind]
        maps = torch.from_numpy(probability_maps(shape, noisy=True))[:, None]
        target = (torch.from_numpy(probability_maps(shape, noisy=True, seed=1))[:, None] >= 0.5).float()
        ndim = len(shape) - 1
        workload = "×".join(map(str, shape))
        steps = {}
        for name, make in losses.items():
            def step(loss_fn=make(ndim)):
                x = maps.clone().requires_grad_()
                loss_fn(x, target).backward()

            steps[name] = step
        skipped = []
        for name in ("topolosses HutopoLoss", "topolosses BettiMatchingLoss"):
            if names is not None and name not in names:
                continue
            if name in peers:
                steps[name] = lambda loss_fn=peers[name]: loss_fn(maps.clone().requires_grad_(), target).backward()
            else:
                skipped.append(name)
        for step in steps.values():
            step()  # warm-up: numba kernels load on the first call
        # In turns, so that a peer and ours see the same spells of a shared machine.
        for name, (seconds, runs) in median_times(steps, repeats).items():
            row = {"workload": workload, "loss": name, "seconds": seconds, "runs": runs}
            if ndim == 3 and name in losses:
                row["MB"] = peak_memory_mb(steps[name])
            rows.append(row)
        rows += [{"workload": workload, "loss": name, "seconds": None, "runs": 0} for name in skipped]
    times = {(row["workload"], row["loss"]): row["seconds"] for row in rows}
    for row in rows:
        theirs = times.get((row["workload"], PEERS.get(row["loss"])))
        if theirs is not None:
            row["speed-up"] = theirs / row["seconds"]
    return rows


def bundle_network(bundle: str) -> torch.nn.Module:
    """The ``network_def`` of a bundle's train.json, freshly initialised."""
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / "train.json"))
    return parser.get_parsed_content("network_def")


def training_step_rows(size: dict, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    net = bundle_network("cardiac_myocardium_topo")
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)
    batch, height, width = size["step"]
    images = torch.rand(batch, 1, height, width)
    labels = (torch.rand(batch, 1, height, width) > 0.5).float()
    dice = DiceLoss(sigmoid=True)
    prior = TopologicalPriorLoss(prior=(1, 1), sigmoid=True)
    rows = []
    for name, with_topology in (("Dice only", False), ("Dice + 0.01·TopologicalPriorLoss", True)):
        def step():
            optimiser.zero_grad()
            logits = net(images)
            loss = dice(logits, labels)
            if with_topology:
                loss = loss + 0.01 * prior(logits)
            loss.backward()
            optimiser.step()

        step()  # warm-up
        seconds, runs = median_time(step, repeats)
        rows.append({"step": name, "batch": f"{batch}×{height}×{width}", "seconds": seconds, "runs": runs})
    return rows


def _train_briefly(net, images, labels, steps):
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)
    x, y = torch.from_numpy(np.stack(images))[:, None], torch.from_numpy(np.stack(labels))[:, None].float()
    loss = DiceLoss(sigmoid=True)
    for _ in range(steps):
        optimiser.zero_grad()
        loss(net(x), y).backward()
        optimiser.step()
    return net.eval()


def refinement_rows(size: dict) -> list[dict]:
    """Seconds per item of refine_with_topology until the prior holds (or the iteration cap)."""
    cases = {
        "2D slice (cardiac U-Net)": ("cardiac_myocardium_topo", (1, 1), 0.01,
                                     lambda k: myocardium_phantom(size["slice"], rng=k)),
        "3D volume (placenta U-Net)": ("placenta_topo", (1, 0, 0), 0.005,
                                       lambda k: placenta_phantom(size["volume"], rng=k)),
    }
    rows = []
    for name, (bundle, prior, lambda_topo, make) in cases.items():
        train = [make(k) for k in range(16)]
        net = _train_briefly(bundle_network(bundle), [i for i, _ in train], [l for _, l in train], size["train_steps"])
        seconds, iterations, fixed, wrong = [], [], 0, 0
        for k in range(100, 100 + size["refine_items"]):
            image, _ = make(k)
            _, record = refine_with_topology(net, torch.from_numpy(image)[None], prior, lambda_topo=lambda_topo,
                                             lr=1e-3, iterations=size["iterations"])
            seconds.append(record["seconds"])
            iterations.append(record["iterations"])
            if not record["satisfied_before"]:
                wrong += 1
                fixed += record["satisfied_after"]
        rows.append({"case": name, "items": len(seconds), "median s/item": statistics.median(seconds),
                     "max s/item": max(seconds), "median iterations": statistics.median(iterations),
                     "fixed": f"{fixed}/{wrong}"})
    return rows


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def shipped_network(bundle: str) -> torch.nn.Module:
    """A bundle's network with its shipped weights (``models/model.pt``), in eval mode."""
    net = bundle_network(bundle)
    net.load_state_dict(torch.load(BUNDLES / bundle / "models" / "model.pt", map_location="cpu", weights_only=True))
    return net.eval()


def volume_refinement_rows(size: dict, modes: Sequence[str] | None = None) -> list[dict]:
    """Eq. 5 per large volume for each refinement mode: seconds, iterations, share fixed, Dice change.

    The volumes are the placenta bundle's test phantoms (``generate_dataset``'s seeds) at each size,
    segmented by the bundle's shipped network, one forward pass of the whole volume.
    """
    net = shipped_network("placenta_topo")
    rows = []
    for shape in size["large_volumes"]:
        scale = ScaleIntensityRangePercentiles(1, 99, 0.0, 1.0, clip=True)  # the bundle's preprocessing
        pairs = [placenta_phantom(shape, rng=np.random.default_rng([0, 3, i])) for i in range(size["large_items"])]
        pairs = [(np.asarray(scale(image[None]), np.float32)[0], label) for image, label in pairs]
        with torch.no_grad():
            initial = [torch.sigmoid(net(torch.from_numpy(image)[None, None]))[0, 0].numpy() >= 0.5
                       for image, _ in pairs]
        for mode, kwargs in VOLUME_MODES.items():
            if modes is not None and mode not in modes:
                continue
            seconds, iterations, wrong, fixed, dice_change, betti = [], [], 0, 0, [], []
            for (image, label), before in zip(pairs, initial):
                probs, record = refine_with_topology(net, torch.from_numpy(image)[None], (1, 0, 0), lambda_topo=0.005,
                                                     iterations=size["volume_iterations"], **kwargs)
                seconds.append(record["seconds"])
                iterations.append(record["iterations"])
                betti.append(f"{record['betti_before'][0]}→{record['betti_after'][0]}")
                truth = label.astype(bool)
                if not record["satisfied_before"]:
                    wrong += 1
                    fixed += record["satisfied_after"]
                dice_change.append((_dice(before, truth), _dice(probs[0].numpy() >= 0.5, truth)))
            rows.append({"volume": "×".join(map(str, shape)), "mode": mode, "cap": size["volume_iterations"],
                         "items": len(seconds), "median s": statistics.median(seconds), "max s": max(seconds),
                         "iterations": iterations, "betti": betti, "fixed": f"{fixed}/{wrong}",
                         "seconds": seconds, "dice": [f"{a:.3f}→{b:.3f}" for a, b in dice_change],
                         "dice before": float(np.mean([d[0] for d in dice_change])),
                         "dice after": float(np.mean([d[1] for d in dice_change])),
                         "load": os.getloadavg()[0]})
            print(rows[-1], file=sys.stderr, flush=True)  # progress of a long run
    return rows


def training_step_3d_rows(size: dict, repeats: int) -> list[dict]:
    """One training step of the placenta U-Net on a batch of 2 patches: Dice vs Dice + 0.005·prior."""
    torch.manual_seed(0)
    net = bundle_network("placenta_topo")
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)
    image, label = placenta_phantom(size["large_volumes"][-1], rng=0)
    centre = np.argwhere(label).mean(0).astype(int)  # a patch across the placenta, as the bundle's positive crops
    starts = [max(0, min(c - p // 2, n - p)) for c, p, n in zip(centre, size["patch"], label.shape)]
    box = tuple(slice(s, s + p) for s, p in zip(starts, size["patch"]))
    images = torch.from_numpy(np.stack([image[box], image[box][::-1].copy()]))[:, None]
    labels = torch.from_numpy(np.stack([label[box], label[box][::-1].copy()]))[:, None].float()
    dice = DiceLoss(sigmoid=True)
    prior = TopologicalPriorLoss(prior=(1, 0, 0), sigmoid=True)
    rows = []
    for name, with_topology in (("Dice only", False), ("Dice + 0.005·TopologicalPriorLoss", True)):
        def step():
            optimiser.zero_grad()
            logits = net(images)
            loss = dice(logits, labels)
            if with_topology:
                loss = loss + 0.005 * prior(logits)
            loss.backward()
            optimiser.step()

        step()
        seconds, runs = median_time(step, repeats)
        rows.append({"step": name, "batch": "2×" + "×".join(map(str, size["patch"])), "seconds": seconds, "runs": runs})
    return rows


def markdown(results: dict) -> str:
    lines = ["Loss forward + backward (s, median; speed-up: topolosses' time for the same construction / ours):", "",
             "| workload | loss | s | runs | speed-up vs topolosses | peak MB (3D) |", "|---|---|---:|---:|---:|---:|"]
    for row in results["losses"]:
        seconds = "skipped (not importable)" if row["seconds"] is None else f"{row['seconds']:.3f}"
        memory = f"{row['MB']:.0f}" if "MB" in row else ""
        speedup = f"{row['speed-up']:.1f}×" if "speed-up" in row else ""
        lines.append(f"| {row['workload']} | {row['loss']} | {seconds} | {row['runs']} | {speedup} | {memory} |")
    if not any(results.get(part) for part in ("steps", "refinement", "volumes", "steps_3d")):  # losses only
        return "\n".join(lines)
    lines += ["", "Training step of the cardiac bundle's U-Net (s, median):", "", "| step | batch | s | runs |",
              "|---|---|---:|---:|"]
    lines += [f"| {r['step']} | {r['batch']} | {r['seconds']:.3f} | {r['runs']} |" for r in results["steps"]]
    if results["steps"]:
        base, topo = (r["seconds"] for r in results["steps"])
        lines += ["", f"Topology prior overhead per step: {topo / base:.2f}×"]
    lines += ["", "Test-time refinement until the prior holds (lr 1e-3, iteration cap as in the size):", "",
              "| case | items | median s/item | max s/item | median iterations | fixed (of initially wrong) |",
              "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['case']} | {r['items']} | {r['median s/item']:.2f} | {r['max s/item']:.2f} | "
              f"{r['median iterations']:.0f} | {r['fixed']} |" for r in results["refinement"]]
    lines += ["", "Eq. 5 per volume by refinement mode (λ = 0.005, the placenta bundle's shipped weights, its test "
              "phantoms, stop once one blob):", "",
              "| volume | mode | iteration cap | volumes | median s | max s | s per volume | iterations "
              "| Betti before→after | fixed (of initially wrong) | Dice per volume | Dice before | Dice after | load |",
              "|---|---|---:|---:|---:|---:|---|---|---|---:|---|---:|---:|---:|"]
    lines += [f"| {r['volume']} | {r['mode']} | {r['cap']} | {r['items']} | {r['median s']:.1f} | {r['max s']:.1f} | "
              f"{', '.join(f'{t:.1f}' for t in r['seconds'])} | {', '.join(map(str, r['iterations']))} | "
              f"{'; '.join(r['betti'])} | {r['fixed']} | {'; '.join(r['dice'])} | "
              f"{r['dice before']:.3f} | {r['dice after']:.3f} | {r['load']:.1f} |"
              for r in results["volumes"]]
    lines += ["", "Training step of the placenta U-Net on patches (s, median):", "", "| step | batch | s | runs |",
              "|---|---|---:|---:|"]
    lines += [f"| {r['step']} | {r['batch']} | {r['seconds']:.3f} | {r['runs']} |" for r in results["steps_3d"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark from the command line; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=list(SIZES), default="default")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cell (median)")
    parser.add_argument("--out", help="also write the markdown tables to this file")
    parser.add_argument("--only", choices=["losses", "steps", "refinement", "volumes", "steps_3d"], nargs="+",
                        help="run only these parts (default: all)")
    parser.add_argument("--losses-only", action="store_true", help="time the losses only (same as --only losses)")
    parser.add_argument("--modes", nargs="+", choices=list(VOLUME_MODES), help="refinement modes of the volume rows")
    parser.add_argument("--iterations", type=int, help="iteration cap of the volume rows (default: the size's)")
    parser.add_argument("--volumes", type=int, help="test phantoms per size in the volume rows (default: the size's)")
    parser.add_argument("--loss-3d", help="the 3D loss workload instead of the size's, e.g. 96x240x256 (one volume)")
    parser.add_argument("--losses", nargs="+", help="time only these losses (row names, ours or topolosses')")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    size = dict(SIZES[args.size])
    if args.loss_3d:
        try:
            size["loss_3d"] = (1, *(int(n) for n in args.loss_3d.lower().split("x")))
        except ValueError:
            parser.error(f"--loss-3d must read DxHxW, e.g. 96x240x256, got {args.loss_3d!r}")
        if len(size["loss_3d"]) != 4 or min(size["loss_3d"][1:]) < 2:
            parser.error(f"--loss-3d must read DxHxW with sizes >= 2, e.g. 96x240x256, got {args.loss_3d!r}")
    if args.volumes is not None:
        size["large_items"] = args.volumes
    if args.iterations is not None:
        size["volume_iterations"] = args.iterations
    threads = configure_threads()  # the package's policy: this process's share of the free cores
    start = time.perf_counter()
    only = ["losses"] if args.losses_only else args.only
    parts = {"losses": lambda: loss_rows(size, args.repeats, args.losses), "steps": lambda: training_step_rows(size, args.repeats),
             "refinement": lambda: refinement_rows(size), "volumes": lambda: volume_refinement_rows(size, args.modes),
             "steps_3d": lambda: training_step_3d_rows(size, args.repeats)}
    results = {name: run() if only is None or name in only else [] for name, run in parts.items()}
    report = (f"Machine: {machine()}; torch threads {threads} (monai_topo.threads.configure_threads)\n\n"
              f"{markdown(results)}\n\n(total {time.perf_counter() - start:.0f} s)\n")
    publish(report, args.out)
    return results


if __name__ == "__main__":
    main()
