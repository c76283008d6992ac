"""3D blob prior by test-time post-processing (Clough et al., experiment 4: placenta, Eq. 5 with prior (1, 0, 0)).

Two 3D tasks, each refined with :func:`monai_topo.transforms.refine_with_topology` (λ = 0.005, prior
(1, 0, 0): one solid blob, no tunnels, no cavities; stop as soon as the thresholded output has it):

1. Placenta at the paper's size: the placenta bundle's test phantoms (``bundles/placenta_topo``,
   96×240×256 at ``--full``; :func:`monai_topo.data.placenta_phantom` with the bundle's seeds and its
   percentile scaling), segmented by the bundle's shipped weights (``models/model.pt``; training a
   network of that size here would take hours on 2 cores). Each volume is refined twice, side by
   side: the whole network (``roi_threshold=None``, ``amp=False``, lr 1e-4) and the tail mode
   (``refine_last=7``, lr 3e-3, the package's other defaults: ROI, ``ph_floor`` and ``amp`` "auto").
2. The TotalSegmentator example CT at its native resolution (122×101×30 voxels of 3 mm, zero-padded to
   128×104×32 for the U-Net, scored on the native grid): spleen, both kidneys and liver, each one solid
   blob. A 5-class MONAI U-Net (background + 4 organs, softmax, DiceCE) is trained here on degraded
   copies of the CT (noise, blur, bright distractor blobs near the organs), then Eq. 5 with one prior
   per organ channel (``class_priors``). There is one CT, so training and test volumes are different
   random degradations of the same anatomy: this tests the refinement, not how the network
   generalises to new patients.

Reported per volume (and organ): Dice, Betti numbers (package) and 26-connected components
(``scipy.ndimage.label``, independent of the package) before and after, steps and seconds.

    python experiments/blob3d_postprocess.py          # default: 2 placenta volumes (≤ 10 steps), ~10 min
    python experiments/blob3d_postprocess.py --full   # all 4 placenta volumes, ≤ 100 steps; longer CT training
"""

from __future__ import annotations

import time

import nibabel as nib
import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.metrics import compute_dice
from monai.networks.utils import one_hot
from monai.transforms import ScaleIntensityRangePercentiles
from scipy import ndimage

from common import ROOT, markdown_table, mean_se, parse_args, predict, save_figure, train_on_tensors, unet, write_results
from monai_topo.data import placenta_phantom
from monai_topo.inference.bundle import load_weights, read_inference_config
from monai_topo.ph import betti_numbers
from monai_topo.transforms import refine_with_topology

BLOB = (1, 0, 0)
LAMBDA = 0.005  # the paper's λ for the placenta
PLACENTA_MODES = {
    "whole network": dict(roi_threshold=None, amp=False, lr=1e-4),
    "tail (refine_last=7)": dict(refine_last=7, lr=3e-3),
}
ORGANS = {1: "spleen", 2: "kidney (label 2)", 3: "kidney (label 3)", 5: "liver"}  # label in example_seg -> name
ORGAN_PRIORS = {channel: BLOB for channel in range(1, len(ORGANS) + 1)}  # network channel c = c-th organ
CT_REFINE = dict(lr=1e-4)
SETTINGS = {
    "smoke": dict(placenta=dict(shape=(24, 32, 32), volumes=1, iterations=2),
                  ct=dict(n_train=2, n_test=1, steps=20, channels=(4, 8, 16, 32), iterations=1)),
    "default": dict(placenta=dict(shape=(96, 240, 256), volumes=2, iterations=10),
                    ct=dict(n_train=8, n_test=2, steps=300, channels=(8, 16, 32, 64), iterations=30)),
    "full": dict(placenta=dict(shape=(96, 240, 256), volumes=4, iterations=100),
                 ct=dict(n_train=16, n_test=4, steps=600, channels=(16, 32, 64, 128), iterations=100)),
}
FULL_CONNECTIVITY = np.ones((3, 3, 3), bool)  # 26-connected foreground, the package's default


def components(mask: np.ndarray) -> int:
    """26-connected components of a binary volume (scipy, independent of the package's PH)."""
    return int(ndimage.label(mask, FULL_CONNECTIVITY)[1])


def shipped_placenta_network() -> torch.nn.Module:
    """The placenta bundle's network (``network_def`` of its inference.json) with its shipped weights."""
    parser = read_inference_config(ROOT / "bundles" / "placenta_topo")
    network = parser.get_parsed_content("network_def")
    return load_weights(network, parser.get_parsed_content("ckpt_path"), torch.device("cpu")).eval()


def placenta_test_volumes(shape, n: int) -> list[tuple[torch.Tensor, np.ndarray]]:
    """The bundle's first ``n`` test phantoms (its seeds ``[0, 3, i]``) scaled as its preprocessing does."""
    scale = ScaleIntensityRangePercentiles(1, 99, 0.0, 1.0, clip=True)
    volumes = []
    for i in range(n):
        image, label = placenta_phantom(shape, rng=np.random.default_rng([0, 3, i]))
        volumes.append((torch.as_tensor(np.asarray(scale(image[None]), np.float32)), label.astype(bool)))
    return volumes


def placenta_rows(cfg, on_row) -> list[dict]:
    """Eq. 5 in each mode on each test volume; ``on_row(rows)`` after each (the run is long)."""
    net = shipped_placenta_network()
    rows = []
    for index, (image, truth) in enumerate(placenta_test_volumes(cfg["shape"], cfg["volumes"])):
        before = predict(net, image[None])[0, 0].numpy() >= 0.5
        for mode, kwargs in PLACENTA_MODES.items():
            probs, record = refine_with_topology(net, image, BLOB, lambda_topo=LAMBDA, iterations=cfg["iterations"],
                                                 stop_when_satisfied=True, **kwargs)
            after = probs[0].numpy() >= 0.5
            masks = (before, after)
            rows.append({"volume": index, "mode": mode, "dice": [dice(m, truth) for m in masks],
                         "betti": [betti_numbers(m) for m in masks], "components": [components(m) for m in masks],
                         "steps": record["iterations"], "seconds": record["seconds"], "amp": record["amp"],
                         "roi": record["roi"]})
            on_row(rows)
    return rows


def dice(mask: np.ndarray, truth: np.ndarray) -> float:
    """MONAI's Dice of one binary mask against the truth."""
    as_tensor = [torch.from_numpy(np.ascontiguousarray(m))[None, None].float() for m in (mask, truth)]
    return float(compute_dice(*as_tensor, include_background=True))


def placenta_table(rows) -> str:
    lines = [[r["volume"], r["mode"], f"{r['dice'][0]:.3f}", f"{r['dice'][1]:.3f}", r["betti"][0], r["betti"][1],
              r["components"][0], r["components"][1], r["steps"], f"{r['seconds']:.0f}"] for r in rows]
    for mode in PLACENTA_MODES:
        ours = [r for r in rows if r["mode"] == mode]
        if not ours:
            continue
        dice_b, dice_a = (mean_se(r["dice"][k] for r in ours) for k in (0, 1))
        blobs = [sum(r["betti"][k] == BLOB for r in ours) for k in (0, 1)]
        lines.append(["**mean ± se**", f"**{mode}**", f"{dice_b[0]:.3f} ± {dice_b[1]:.3f}",
                      f"{dice_a[0]:.3f} ± {dice_a[1]:.3f}", f"{blobs[0]}/{len(ours)} = (1,0,0)",
                      f"{blobs[1]}/{len(ours)} = (1,0,0)", "", "", "", f"{sum(r['seconds'] for r in ours):.0f} total"])
    return markdown_table(["volume", "mode", "Dice before", "Dice after", "Betti before", "Betti after",
                           "components before", "after", "steps", "s"], lines)


def ct_volumes(data_dir, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """``n`` degraded copies of the whole CT, zero-padded to multiples of 8, and the (shared) organ labels 0-4.

    Also returns the native shape, on which the predictions are scored.
    """
    root = data_dir / "totalseg_ct"
    ct = np.asarray(nib.load(root / "example_ct_sm.nii.gz").dataobj, np.float32)
    seg = np.asarray(nib.load(root / "example_seg.nii.gz").dataobj)
    label = np.zeros(seg.shape, np.int64)
    for channel, organ in enumerate(ORGANS, start=1):
        label[seg == organ] = channel
    # Padding with air (0 in the window) rather than the edge values: the organs reach the first and
    # last slices, and repeating them would show the network organ tissue labelled background.
    pad = [(0, int(np.ceil(s / 8) * 8) - s) for s in ct.shape]
    clean = np.pad(np.clip((ct + 100) / 350, 0, 1), pad)  # soft-tissue window
    label = np.pad(label, pad)
    organs = label > 0
    near = np.argwhere(ndimage.binary_dilation(organs, iterations=3) & ~organs)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in clean.shape], indexing="ij"), -1)
    rng = np.random.default_rng(seed)
    volumes = []
    for _ in range(n):
        image = clean.copy()
        for _ in range(8):  # bright blobs (contrast-filled bowel, ribs) touching or near the organs
            centre = near[rng.integers(len(near))]
            image[np.linalg.norm(grid - centre, axis=-1) <= rng.uniform(1.5, 3.0)] = rng.uniform(0.8, 1.0)
        image = ndimage.gaussian_filter(image, rng.uniform(0.8, 1.2)) + rng.normal(0, 0.12, image.shape)
        volumes.append(np.clip(image, 0, 1).astype(np.float32))
    return np.stack(volumes), label, ct.shape


def ct_rows(cfg, data_dir, seed) -> tuple[list[dict], list[dict], tuple]:
    """Train the 5-class U-Net on degraded CTs, refine each test degradation; per-organ and per-volume rows."""
    n = cfg["n_train"] + cfg["n_test"]
    volumes, label, native = ct_volumes(data_dir, n, seed)
    images = torch.from_numpy(volumes)[:, None]
    labels = torch.from_numpy(label)[None, None].expand(n, 1, *label.shape).contiguous()
    net = unet(3, cfg["channels"], out_channels=len(ORGANS) + 1)
    started = time.perf_counter()
    train_on_tensors(net, images[: cfg["n_train"]], labels[: cfg["n_train"]],
                     DiceCELoss(to_onehot_y=True, softmax=True), cfg["steps"], batch_size=2, seed=seed)
    training_seconds = time.perf_counter() - started
    crop = tuple(slice(0, s) for s in native)
    truth = label[crop]
    organ_rows, volume_rows, maps = [], [], []
    for index, x in enumerate(images[cfg["n_train"]:]):
        with torch.no_grad():
            initial = torch.softmax(net(x[None]), 1)[0]
        refined, record = refine_with_topology(net, x, class_priors=ORGAN_PRIORS, softmax=True, lambda_topo=LAMBDA,
                                               iterations=cfg["iterations"], stop_when_satisfied=True, **CT_REFINE)
        segmentations = [probs.argmax(0).numpy()[crop] for probs in (initial, refined)]
        scores = [compute_dice(one_hot(torch.from_numpy(s)[None, None], len(ORGANS) + 1),
                               one_hot(torch.from_numpy(truth)[None, None], len(ORGANS) + 1), include_background=False)[0]
                  for s in segmentations]
        for channel, name in enumerate(ORGANS.values(), start=1):
            masks = [s == channel for s in segmentations]
            organ_rows.append({"volume": index, "organ": name, "dice": [float(d[channel - 1]) for d in scores],
                               "betti": [betti_numbers(m) for m in masks], "components": [components(m) for m in masks]})
        volume_rows.append({"volume": index, "steps": record["iterations"], "seconds": record["seconds"],
                            "check": [record["satisfied_before"], record["satisfied_after"]]})
        maps.append((volumes[cfg["n_train"] + index][crop], segmentations))
    return organ_rows, volume_rows, (truth, maps, training_seconds)


def ct_tables(organ_rows, volume_rows) -> str:
    lines = [[r["volume"], r["organ"], f"{r['dice'][0]:.3f}", f"{r['dice'][1]:.3f}", r["betti"][0], r["betti"][1],
              r["components"][0], r["components"][1]] for r in organ_rows]
    for name in ORGANS.values():
        ours = [r for r in organ_rows if r["organ"] == name]
        dice_b, dice_a = (mean_se(r["dice"][k] for r in ours) for k in (0, 1))
        blobs = [sum(r["betti"][k] == BLOB for r in ours) for k in (0, 1)]
        lines.append(["**mean ± se**", f"**{name}**", f"{dice_b[0]:.3f} ± {dice_b[1]:.3f}",
                      f"{dice_a[0]:.3f} ± {dice_a[1]:.3f}", f"{blobs[0]}/{len(ours)} = (1,0,0)",
                      f"{blobs[1]}/{len(ours)} = (1,0,0)", "", ""])
    blobs = [sum(r["betti"][k] == BLOB for r in organ_rows) for k in (0, 1)]
    lines.append(["**all**", "**organs one solid blob**", "", "", f"{blobs[0]}/{len(organ_rows)}",
                  f"{blobs[1]}/{len(organ_rows)}", "", ""])
    organs = markdown_table(["volume", "organ", "Dice before", "Dice after", "Betti before", "Betti after",
                             "components before", "after"], lines)
    per_volume = markdown_table(
        ["volume", "Eq. 5 steps", "s", "every organ channel one blob at p ≥ 0.5 (Eq. 5's check): before", "after"],
        [[r["volume"], r["steps"], f"{r['seconds']:.0f}", r["check"][0], r["check"][1]] for r in volume_rows])
    return organs + "\n\n" + per_volume


def main() -> None:
    args = parse_args("blob3d_postprocess", __doc__.splitlines()[0])
    cfg = SETTINGS[args.size]
    started = time.perf_counter()
    placenta, ct = cfg["placenta"], cfg["ct"]
    sections = {
        "size": f"Size: **{args.size}**. Eq. 5: prior (1,0,0), λ = {LAMBDA}, Adam, stop once the thresholded output is "
                "one solid blob (26-connected foreground). Betti numbers (monai_topo.ph.betti_numbers) and components "
                "(scipy.ndimage.label, 26-connected) of the thresholded (placenta: p ≥ 0.5) or argmax (CT) output.",
    }

    def write(placenta_rows_so_far) -> None:  # after every placenta row: a full-size run takes most of an hour
        sections["placenta"] = (
            f"## Placenta, the bundle's test phantoms {placenta['shape']}, shipped weights\n\n"
            f"{placenta['volumes']} test volumes (`placenta_phantom(shape, rng=np.random.default_rng([0, 3, i]))`, "
            "percentiles 1-99 scaled to [0, 1]), the placenta bundle's U-Net (channels 16-128, batch norm) with "
            f"`models/model.pt`, one forward pass of the whole volume. ≤ {placenta['iterations']} Eq. 5 steps. Modes: "
            "whole network (`roi_threshold=None, amp=False`, lr 1e-4); tail (`refine_last=7`, lr 3e-3, ROI, "
            "`ph_floor` and `amp` at their \"auto\" defaults). One torch thread.\n\n" + placenta_table(placenta_rows_so_far))
        write_results(args.out, "3D blob prior with post-processing", list(sections.values()), started)

    rows = placenta_rows(placenta, write)
    organ_rows, volume_rows, (truth, maps, training_seconds) = ct_rows(ct, args.data, args.seed)
    truth_topology = ", ".join(f"{name} {betti_numbers(truth == channel)} (scipy components: "
                               f"{components(truth == channel)})" for channel, name in enumerate(ORGANS.values(), start=1))
    sections["ct"] = (
        f"## TotalSegmentator example CT, native resolution {truth.shape} at 3 mm: spleen, kidneys, liver\n\n"
        f"5-class 3D MONAI U-Net (channels {ct['channels']}), softmax + DiceCE, Adam lr 1e-3, batch 2, {ct['steps']} "
        f"steps ({training_seconds:.0f} s) on {ct['n_train']} degraded copies of the CT (noise, blur, 8 bright blobs near "
        f"the organs); tested on {ct['n_test']} other degradations of the **same** CT. Eq. 5 with class_priors "
        f"{{1: (1,0,0), 2: (1,0,0), 3: (1,0,0), 4: (1,0,0)}}, softmax, lr {CT_REFINE['lr']}, ≤ {ct['iterations']} steps, "
        "on the zero-padded 128×104×32 volume; scored on the native grid. Betti numbers of the truth: "
        f"{truth_topology}.\n\n" + ct_tables(organ_rows, volume_rows))
    sections["paper"] = ("Paper (placenta, 3D ultrasound 96×240×256, real data, prior (1,0,0), λ = 0.005): Dice +0.024 "
                         "on average after post-processing.")
    sections["reading"] = "## Reading\n\n" + READING[args.size]
    sections["figure"] = ("Figure `slices.png`: the CT test volumes, the axial slice with the most organ voxels: degraded "
                          "input, truth, argmax before and after Eq. 5.")
    figure(args.out, truth, maps)
    write(rows)
    print({"placenta": rows, "organs": organ_rows, "volumes": volume_rows})


READING = {  # what the committed runs showed (results.md: default, full/results.md: full)
    "smoke": "Smoke run: tiny volumes and an untrained CT network; the numbers only show that the pipeline runs.",
    "default": (
        "**Placenta at 96×240×256** (the shipped weights, 2 test volumes, ≤ 10 steps). The network's predictions "
        "are far from a blob: 120 and 240 spurious components, 5 and 14 tunnels. Within 10 steps neither mode reaches "
        "the prior on either volume (0/2 and 0/2 one solid blob), so the share fixed cannot separate the modes here; "
        "the remaining features can. Whole network: 120 → 13 and 240 → 32 components, 2 and 0 tunnels, no cavities "
        "left ((13, 2, 0), (32, 0, 0)). Tail: 120 → 1 and 240 → 4 components, but a cavity, and on volume 1 "
        "14 tunnels and 5 cavities, left ((1, 0, 1), (4, 14, 5)). Dice rises in both modes, by removing false-positive specks: 0.923 → 0.958 (both modes) and "
        "0.854 → 0.920 (whole) / 0.931 (tail), more than the paper's +0.024 because this network's predictions hold "
        "many more spurious blobs than the paper's. Time per volume: 66-67 s for 10 whole-network steps (6.6 s a "
        "step, float32, whole volume) against 31-33 s for 10 tail steps (3.2 s a step, bfloat16 autocast and the "
        "ROI on, as 'auto' chose on this CPU with AVX-512 BF16); one torch thread on a machine shared with other "
        "jobs. Volume 0's initial Dice 0.923 and Betti (120, 5, 0) agree with the lead's bench_training "
        "measurement of the same phantom (docs/benchmarks.md). The ≤ 100-step comparison is in `full/results.md`.\n\n"
        "**CT at native resolution.** Trained on degradations of the same CT it is tested on, the 5-class U-Net "
        "reaches Dice 0.96-0.98 for every organ, so this says nothing about new patients. Every organ is one "
        "component before refinement in both test volumes (scipy), spleen and kidneys are already (1, 0, 0); the "
        "liver has 2 and 1 tunnels. Eq. 5 removes them in one step (5 s): 6/8 → 8/8 organs one solid blob, spleen "
        "and kidneys within ±0.003 Dice, but the liver's Dice drops (0.981 → 0.979, 0.980 → 0.976). The reason is in "
        "the truth: the liver label itself is not a solid blob at 3 mm but (1, 1, 1), one tunnel and a one-voxel "
        "cavity (the package's Betti numbers; checked independently with scipy's labelling of the 6-connected "
        "background and skimage's Euler number). The prior (1, 0, 0) the task prescribes is wrong for this label, "
        "and Eq. 5 enforces it against the truth. A liver prior of (1, 1, 1), or a label without that tunnel, "
        "would be the consistent choice; it is not run here."
    ),
    "full": (
        "**Placenta at 96×240×256** (the shipped weights, all 4 test volumes of the bundle, ≤ 100 steps, the "
        "paper's cap). Each mode brings 2 of the 4 volumes to one solid blob, but not the same two: the whole "
        "network fixes volumes 0 (32 steps, 225 s) and 3 (26 steps, 103 s) and leaves (3, 0, 0) and (2, 0, 0) after "
        "100 steps on volumes 1 and 2 (471 s, 377 s); the tail fixes volumes 0 (12 steps, 35 s) and 2 (16 steps, "
        "35 s) and leaves (2, 1, 1) and (2, 2, 0) on volumes 1 and 3 (179 s, 235 s). Dice after is lower for the "
        "tail on every volume (0.957 / 0.968, 0.898 / 0.937, 0.933 / 0.945, 0.807 / 0.953 tail / whole), mean "
        "0.875 → 0.899 ± 0.033 against 0.875 → 0.951 ± 0.007; on volume 3 (392 components, 52 tunnels before) the "
        "tail's larger steps lower Dice (0.814 → 0.807) where the whole network raises it to 0.953. Total time "
        "484 s (tail) against 1176 s (whole network); under 60 s per volume only where the tail converges in "
        "12-16 steps. So at this size the tail mode is faster and fixes as many volumes, but it does not match the "
        "whole network's Dice, which the issue's goal asks for. The placenta bundle therefore refines the whole "
        "network, at lr 1e-3 with the large-volume defaults (ROI, PH floor, bfloat16): in the benchmark "
        "(docs/benchmarks.md) that brings all 4 volumes to one blob in 10-22 steps, 22-34 s each on 2 cores, "
        "mean Dice 0.923. Both modes raise Dice far more than the paper's "
        "+0.024 because the shipped network's predictions carry 120-392 false-positive specks each. One torch "
        "thread, machine shared with two other heavy jobs (load average 2.3-2.8), so seconds are upper bounds.\n\n"
        "**CT at native resolution** (channels 16-128, 600 steps on 16 degradations, 4 test degradations of the same "
        "CT). The network has all but memorised the one anatomy (Dice 0.997-1.000), which says nothing about new "
        "patients. Every organ is one component before; spleen and kidneys are (1, 0, 0), the liver has one tunnel "
        "in all 4 volumes. Eq. 5 removes it in 2-14 steps (7-44 s): 12/16 → 16/16 organs one solid blob, and the "
        "liver's Dice drops by 0.001-0.002, because the liver label itself is (1, 1, 1) (see the default run's "
        "reading): the prior (1, 0, 0) is wrong for this liver at 3 mm."
    ),
}


def figure(out, truth, maps) -> None:
    import matplotlib.pyplot as plt

    z = int(np.argmax((truth > 0).sum((0, 1))))
    fig, axes = plt.subplots(len(maps), 4, figsize=(7, 2.2 * len(maps)), squeeze=False)
    for row, (image, (before, after)) in enumerate(maps):
        panels = (("degraded CT", image, "gray", 1), ("truth", truth, "tab10", 9), ("before Eq. 5", before, "tab10", 9),
                  ("after Eq. 5", after, "tab10", 9))
        for col, (name, volume, cmap, vmax) in enumerate(panels):
            axes[row, col].imshow(volume[:, :, z].T, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
            axes[row, col].set_title(name, fontsize=6)
            axes[row, col].set_xticks([]), axes[row, col].set_yticks([])
    save_figure(fig, out / "slices.png")


if __name__ == "__main__":
    main()
