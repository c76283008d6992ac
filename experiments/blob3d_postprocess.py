"""3D blob prior by test-time post-processing (Clough et al., experiment 4: placenta, Eq. 5 with prior (1, 0, 0)).

Two 3D tasks, each: a small MONAI 3D U-Net trained with Dice, then every test volume refined with
:func:`monai_topo.transforms.refine_with_topology` (λ = 0.005, prior (1, 0, 0): one solid blob,
no tunnels, no cavities). Reported per volume: Dice, Betti numbers and components before/after.

1. Placenta phantoms (:func:`monai_topo.data.placenta_phantom`: speckle, bright distractors,
   dark lakes inside), independent training and test volumes.
2. The spleen (label 1) of the TotalSegmentator example CT, cropped around it and degraded by
   noise, blur and bright distractor blobs. There is one CT, so training and test volumes are
   different random degradations of the same anatomy: this tests the refinement, not how the
   network generalises to new patients.

    python experiments/blob3d_postprocess.py          # default, ~5 min
    python experiments/blob3d_postprocess.py --full   # larger volumes, longer training
"""

from __future__ import annotations

import time

import nibabel as nib
import numpy as np
import torch
from monai.losses import DiceLoss
from monai.metrics import compute_dice
from scipy import ndimage

from common import markdown_table, mean_se, parse_args, predict, save_figure, train_on_tensors, unet, write_results
from monai_topo.data import placenta_phantom
from monai_topo.ph import betti_numbers
from monai_topo.transforms import refine_with_topology

BLOB = (1, 0, 0)
REFINE = dict(lambda_topo=0.005, lr=1e-4, stop_when_satisfied=True)  # the paper's λ for the placenta
SETTINGS = {
    "smoke": dict(shape=(24, 32, 32), n_train=2, n_test=1, steps=2, iterations=2, channels=(4, 8, 16)),
    "default": dict(shape=(32, 48, 48), n_train=8, n_test=3, steps=250, iterations=30, channels=(8, 16, 32)),
    "full": dict(shape=(48, 96, 96), n_train=40, n_test=10, steps=2000, iterations=100, channels=(16, 32, 64, 128)),
}


def spleen_volumes(data_dir, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` degraded copies of the CT cropped around the spleen, and the (shared) spleen mask."""
    root = data_dir / "totalseg_ct"
    ct = np.asarray(nib.load(root / "example_ct_sm.nii.gz").dataobj, np.float32)
    spleen = np.asarray(nib.load(root / "example_seg.nii.gz").dataobj) == 1
    # Box around the spleen with a margin, grown to multiples of 8 voxels so the U-Net accepts it.
    lo = np.maximum(np.argwhere(spleen).min(0) - 6, 0)
    size = [int(np.ceil((e - s + 12) / 8) * 8) for s, e in zip(lo, np.argwhere(spleen).max(0))]
    box = tuple(slice(s, s + z) for s, z in zip(lo, size))
    ct, label = ct[box], spleen[box]
    ct = np.pad(ct, [(0, z - n) for z, n in zip(size, ct.shape)], mode="edge")
    label = np.pad(label, [(0, z - n) for z, n in zip(size, label.shape)])
    clean = np.clip((ct + 100) / 350, 0, 1)  # soft-tissue window
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in clean.shape], indexing="ij"), -1)
    rng = np.random.default_rng(seed)
    volumes = []
    for _ in range(n):
        image = clean.copy()
        for _ in range(4):  # bright blobs (contrast-filled bowel, ribs) touching or near the organ
            centre = np.argwhere(ndimage.binary_dilation(label, iterations=3) & ~label)[rng.integers(label.sum() // 4)]
            radius = rng.uniform(1.5, 3.0)
            image[np.linalg.norm(grid - centre, axis=-1) <= radius] = rng.uniform(0.8, 1.0)
        image = ndimage.gaussian_filter(image, rng.uniform(0.8, 1.2)) + rng.normal(0, 0.12, image.shape)
        volumes.append(np.clip(image, 0, 1).astype(np.float32))
    return np.stack(volumes), label.astype(np.float32)


def evaluate(net, images, labels, iterations) -> tuple[list[dict], list[tuple[torch.Tensor, torch.Tensor]]]:
    rows, maps = [], []
    for x, y in zip(images, labels):
        before = predict(net, x[None])[0]
        after, record = refine_with_topology(net, x, BLOB, iterations=iterations, **REFINE)
        masks = [before >= 0.5, after >= 0.5]
        dice = [float(compute_dice(m[None].float(), y[None][None], include_background=True)) for m in masks]
        betti = [betti_numbers(m[0]) for m in masks]
        rows.append({"dice": dice, "betti": betti, "steps": record["iterations"], "seconds": record["seconds"]})
        maps.append((before[0], after[0]))
    return rows, maps


def table(rows) -> str:
    lines = [[i, f"{r['dice'][0]:.3f}", f"{r['dice'][1]:.3f}", r["betti"][0], r["betti"][1], r["betti"][0][0],
              r["betti"][1][0], r["steps"], f"{r['seconds']:.0f}"] for i, r in enumerate(rows)]
    dice_b, dice_a = mean_se(r["dice"][0] for r in rows), mean_se(r["dice"][1] for r in rows)
    ok_b = sum(r["betti"][0] == BLOB for r in rows)
    ok_a = sum(r["betti"][1] == BLOB for r in rows)
    lines.append(["mean ± se", f"{dice_b[0]:.3f} ± {dice_b[1]:.3f}", f"{dice_a[0]:.3f} ± {dice_a[1]:.3f}",
                  f"{ok_b}/{len(rows)} = (1,0,0)", f"{ok_a}/{len(rows)} = (1,0,0)", "", "", "", ""])
    return markdown_table(["volume", "Dice before", "Dice after", "Betti before", "Betti after", "components before",
                           "after", "steps", "s"], lines)


def train(cfg, images, labels, seed):
    net = unet(3, cfg["channels"])
    flip = torch.Generator().manual_seed(seed)

    def augment(x, y):  # random flips along each axis
        dims = [d for d in (2, 3, 4) if torch.rand(1, generator=flip) < 0.5]
        return (x.flip(dims), y.flip(dims)) if dims else (x, y)

    train_on_tensors(net, images, labels, DiceLoss(sigmoid=True), cfg["steps"], batch_size=2, augment=augment,
                     seed=seed)
    return net


def main() -> None:
    args = parse_args("blob3d_postprocess", __doc__.splitlines()[0])
    cfg = SETTINGS[args.size]
    started = time.perf_counter()
    sections = [
        f"Size: **{args.size}**. 3D MONAI U-Net (channels {cfg['channels']}), Dice loss, Adam lr 1e-3, batch 2, "
        f"random flips, {cfg['steps']} steps. Eq. 5: prior (1,0,0), λ = {REFINE['lambda_topo']}, Adam lr "
        f"{REFINE['lr']}, ≤ {cfg['iterations']} steps, stop once the thresholded output is one solid blob "
        "(26-connected foreground). Betti numbers at threshold 0.5."
    ]
    results = {}
    n = cfg["n_train"] + cfg["n_test"]
    pairs = [placenta_phantom(cfg["shape"], rng=args.seed + i) for i in range(n)]
    images = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None]
    labels = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.float32))[:, None]
    net = train(cfg, images[: cfg["n_train"]], labels[: cfg["n_train"]], args.seed)
    results["placenta"], _ = evaluate(net, images[cfg["n_train"]:], labels[cfg["n_train"]:], cfg["iterations"])
    sections.append(f"## Placenta phantoms {cfg['shape']} ({cfg['n_train']} train, {cfg['n_test']} test)\n\n"
                    + table(results["placenta"]))

    volumes, spleen = spleen_volumes(args.data, n, args.seed)
    images, labels = torch.from_numpy(volumes)[:, None], torch.from_numpy(spleen)[None, None].expand(n, 1, *spleen.shape)
    net = train(cfg, images[: cfg["n_train"]], labels[: cfg["n_train"]].contiguous(), args.seed)
    results["spleen"], maps = evaluate(net, images[cfg["n_train"]:], labels[cfg["n_train"]:], cfg["iterations"])
    sections.append(f"## Spleen, TotalSegmentator example CT, crop {tuple(spleen.shape)} at 3 mm, degraded "
                    f"({cfg['n_train']} training and {cfg['n_test']} test degradations of the one volume)\n\n"
                    + table(results["spleen"]))
    sections += [
        "Paper (placenta, 3D ultrasound 96×240×256, real data, prior (1,0,0), λ = 0.005): Dice +0.024 on average "
        "after post-processing.",
        "## Reading\n\n" + READING,
        "Figure `slices.png`: the spleen test volumes, the axial slice with the most spleen, prediction before and after.",
    ]
    figure(args.out, images[cfg["n_train"]:], labels[cfg["n_train"]:], maps)
    write_results(args.out, "3D blob prior with post-processing", sections, started)
    print(results)


READING = (
    'Topology: Eq. 5 did what it is for. Every placenta test prediction had one spurious component; the refinement '
    'removed it in all 3 volumes (1 to 18 steps). On the degraded spleen it brought all 3 volumes to one blob (2 → '
    '1, 3 → 1 and 6 → 1 components) in 1 or 2 steps; before the issue-10 fix (the topological term on '
    'sigmoid(sigmoid(z))) the same run fixed 2 of 3 and left the third at 2 components after the 30-step budget. '
    'Dice: unchanged (within ±0.003 per volume, mean 0.691 → 0.688 placenta, 0.555 → 0.554 spleen), so we do not '
    "reproduce the paper's +0.024. The spurious components here are a few voxels, so removing them cannot move "
    'Dice; the Dice deficit of these small networks is in the shape of the main blob, which the prior does not '
    "constrain. Sizes are far from the paper's (32×48×48 phantoms and a 56×56×48 CT crop instead of 96×240×256 real"
    ' ultrasound; a 3-level U-Net trained 250 steps; 3 test volumes; one CT whose training and test volumes are '
    'degradations of the same anatomy), so read this as a functional check of 3D Eq. 5, not as a measurement of the'
    " paper's effect size. The 96×240×256 scale and the native-resolution CT are open (issue 11)."
)


def figure(out, images, labels, maps) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(images), 4, figsize=(7, 1.9 * len(images)), squeeze=False)
    for row, (x, y, (before, after)) in enumerate(zip(images, labels, maps)):
        z = int(np.argmax(y[0].sum((1, 2))))
        for col, (name, img) in enumerate((("degraded CT", x[0]), ("truth", y[0]), (f"before β={betti_numbers(before >= 0.5)}", before),
                                           (f"after β={betti_numbers(after >= 0.5)}", after))):
            axes[row, col].imshow(img[z], cmap="gray", vmin=0, vmax=1)
            axes[row, col].set_title(name, fontsize=6)
            axes[row, col].set_xticks([]), axes[row, col].set_yticks([])
    save_figure(fig, out / "slices.png")


if __name__ == "__main__":
    main()
