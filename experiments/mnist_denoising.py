"""MNIST denoising with topological priors (Clough et al., TPAMI 2020, experiment 1 / Table 1).

Digits are corrupted by zeroing m random horizontal and m random vertical lines of their 2D
Fourier transform (no centre kept). A MONAI U-Net is trained with MSE on 100 (corrupted, clean)
pairs per m; each test digit's reconstruction is then refined with Eq. 5
(:func:`monai_topo.transforms.refine_with_topology`, λ = 0.02) under the Betti prior of its true
class, and a small CNN trained on other, clean digits classifies the reconstructions.

    python experiments/mnist_denoising.py            # default: 500 test digits per m
    python experiments/mnist_denoising.py --full     # paper size: 1000 test digits per m
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy.stats import binomtest

from common import (
    markdown_table,
    parse_args,
    plot_barcode,
    predict,
    save_figure,
    train_on_tensors,
    unet,
    write_results,
)
from monai_topo.ph import betti_numbers, cubical_persistence
from monai_topo.transforms import corrupt_kspace_lines, refine_with_topology

PRIORS = {d: (1, 0) for d in (1, 2, 3, 4, 5, 7)} | {0: (1, 1), 6: (1, 1), 9: (1, 1), 8: (1, 2)}
SETTINGS = {
    #          test digits per m, classifier digits/steps, U-Net steps, sweep digits, m values
    "smoke": dict(n_test=3, n_clf=200, clf_steps=5, unet_steps=3, n_sweep=2, ms=(8,), iterations=2),
    "default": dict(n_test=500, n_clf=3000, clf_steps=600, unet_steps=1000, n_sweep=100, ms=(4, 6, 8, 10),
                    iterations=100),
    "full": dict(n_test=1000, n_clf=3000, clf_steps=1500, unet_steps=2000, n_sweep=300, ms=(4, 6, 8, 10, 12),
                 iterations=100),
}
# Eq. 5 as used for the main table: the paper's λ, Adam, the library's default learning rate.
MAIN = dict(lambda_topo=0.02, lr=1e-4, stop_when_satisfied=True)
SWEEP_M = 8
SWEEP = [
    dict(lambda_topo=0.02, lr=1e-5, stop_when_satisfied=False),  # the reference code's settings
    dict(lambda_topo=0.02, lr=1e-3, stop_when_satisfied=True),
    dict(lambda_topo=0.02, lr=1e-3, stop_when_satisfied=False),
    dict(lambda_topo=0.2, lr=1e-4, stop_when_satisfied=True),
]


def classifier() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 7 * 7, 10),
    )


@torch.no_grad()
def classify(network: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    network.eval()
    return network(images).argmax(1).numpy()


def corrupt(images: torch.Tensor, m: int, seed: int) -> torch.Tensor:
    """Each digit gets its own random lines (seeded by its position)."""
    return torch.stack([corrupt_kspace_lines(img, m, m, keep_centre=0, rng=seed + i) for i, img in enumerate(images)])


def topology_ok(prob: torch.Tensor, prior) -> bool:
    return betti_numbers(prob[0] >= 0.5) == tuple(prior)


def refine_all(net, noisy, labels, iterations, **settings) -> tuple[torch.Tensor, list[dict]]:
    outputs, records = [], []
    for x, y in zip(noisy, labels):
        out, record = refine_with_topology(net, x, PRIORS[int(y)], iterations=iterations, **settings)
        outputs.append(out)
        records.append(record)
    return torch.stack(outputs), records


def score(clf, clean, labels, before, after) -> dict:
    correct_before = classify(clf, before) == labels
    correct_after = classify(clf, after) == labels
    worse = int((correct_before & ~correct_after).sum())
    better = int((~correct_before & correct_after).sum())
    topo_before = np.mean([topology_ok(p, PRIORS[int(y)]) for p, y in zip(before, labels)])
    topo_after = np.mean([topology_ok(p, PRIORS[int(y)]) for p, y in zip(after, labels)])
    return {
        "acc_before": correct_before.mean(), "acc_after": correct_after.mean(),
        "mse_before": float(((before - clean) ** 2).mean()), "mse_after": float(((after - clean) ** 2).mean()),
        "topo_before": topo_before, "topo_after": topo_after, "better": better, "worse": worse,
        "p": binomtest(better, better + worse, 0.5).pvalue if better + worse else 1.0,
    }


def main() -> None:
    args = parse_args("mnist_denoising", __doc__.splitlines()[0])
    cfg = SETTINGS[args.size]
    started = time.perf_counter()
    data = np.load(args.data / "mnist" / "mnist_8000.npz")
    images = torch.from_numpy(data["images"]).float()[:, None] / 255.0
    labels = data["labels"].astype(int)
    # Disjoint parts of the 8000 digits: classifier | U-Net pairs | test digits.
    clf_idx = np.arange(0, cfg["n_clf"])
    pair_idx = np.arange(3000, 3100)
    test_idx = np.arange(4000, 4000 + cfg["n_test"])

    clf = classifier()
    train_on_tensors(clf, images[clf_idx], torch.from_numpy(labels[clf_idx]), torch.nn.functional.cross_entropy,
                     cfg["clf_steps"], batch_size=64, seed=args.seed)
    clean_test, test_labels = images[test_idx], labels[test_idx]
    clf_acc = (classify(clf, clean_test) == test_labels).mean()
    # The class priors are not always true of the clean digits themselves (open 0s, looped 2s).
    prior_holds = np.mean([topology_ok(c, PRIORS[int(y)]) for c, y in zip(clean_test, test_labels)])

    rows, sweep_rows, nets = [], [], {}
    for m in cfg["ms"]:
        net = unet(2, (16, 32, 64))
        train_on_tensors(net, corrupt(images[pair_idx], m, args.seed + 10_000),
                         images[pair_idx], lambda logits, y: torch.nn.functional.mse_loss(torch.sigmoid(logits), y),
                         cfg["unet_steps"], batch_size=16, seed=args.seed)
        nets[m] = net
        noisy = corrupt(clean_test, m, args.seed + 20_000)
        before = predict(net, noisy)
        t0 = time.perf_counter()
        after, records = refine_all(net, noisy, test_labels, cfg["iterations"], **MAIN)
        seconds = (time.perf_counter() - t0) / len(noisy)
        s = score(clf, clean_test, test_labels, before, after)
        rows.append([m, len(test_idx), f"{100 * s['acc_before']:.1f}", f"{100 * s['acc_after']:.1f}",
                     f"{s['better']}/{s['worse']}", f"{s['p']:.3g}", f"{s['mse_before']:.4f}", f"{s['mse_after']:.4f}",
                     f"{100 * s['topo_before']:.1f}", f"{100 * s['topo_after']:.1f}", f"{seconds:.2f}"])
        print("m", m, s, flush=True)
        if m == SWEEP_M:
            sub = slice(0, cfg["n_sweep"])
            for setting in SWEEP[: 2 if args.size == "smoke" else None]:
                refined, recs = refine_all(net, noisy[sub], test_labels[sub], cfg["iterations"], **setting)
                t = score(clf, clean_test[sub], test_labels[sub], before[sub], refined)
                sweep_rows.append([setting["lambda_topo"], setting["lr"], cfg["iterations"],
                                   "yes" if setting["stop_when_satisfied"] else "no",
                                   f"{100 * t['topo_before']:.1f} → {100 * t['topo_after']:.1f}",
                                   f"{100 * t['acc_before']:.1f} → {100 * t['acc_after']:.1f}",
                                   f"{t['better']}/{t['worse']}", f"{t['mse_before']:.4f} → {t['mse_after']:.4f}",
                                   f"{np.mean([r['iterations'] for r in recs]):.0f}"])
                print("sweep", setting, t, flush=True)
            figures(args.out, clf, clean_test, noisy, before, after, test_labels, records, net, cfg["iterations"])

    table = markdown_table(
        ["m", "test digits", "acc. MSE-only %", "acc. + prior %", "fixed/broken", "McNemar p", "MSE before",
         "MSE after", "topology correct before %", "after %", "s / digit"], rows)
    sweep = markdown_table(
        ["λ", "lr", "max iterations", "stop when prior holds", "topology correct %", "accuracy %", "fixed/broken",
         "MSE", "mean steps"], sweep_rows)
    sections = [
        f"Size: **{args.size}** ({len(test_idx)} test digits per m, the same digits for every m; U-Net "
        f"(MONAI, channels 16-32-64) trained with MSE on 100 pairs for {cfg['unet_steps']} Adam steps; classifier "
        f"(2-layer CNN) trained on {len(clf_idx)} other clean digits: {100 * clf_acc:.1f} % on the clean test digits, "
        f"paper 98.7 %). Eq. 5: λ = {MAIN['lambda_topo']}, Adam lr {MAIN['lr']}, at most {cfg['iterations']} steps, "
        "stopping once the thresholded output has the prior's Betti numbers. Priors from the true class: "
        "1,2,3,4,5,7 → (1,0); 0,6,9 → (1,1); 8 → (1,2); they hold for "
        f"{100 * prior_holds:.1f} % of the clean test digits themselves (threshold 0.5, 8-connected). McNemar: exact "
        "two-sided binomial test on the discordant pairs (fixed = wrong → right, broken = right → wrong).",
        "## Accuracy, MSE and topology with and without the prior\n\n" + table,
        "Paper (Table 1, 1000 digits, accuracy MSE-only → with prior): m=6 87.6 → 90.8 %; m=8 80.4 → 86.0 %; "
        "m=10 70.4 → 75.0 %; m=12 56.9 → 63.0 %.",
        f"## Trade-off sweep at m = {SWEEP_M} (first {min(cfg['n_sweep'], len(test_idx))} test digits)\n\n" + sweep,
        "## Reading\n\n" + READING,
        "Figures: `digits.png` (clean, corrupted, U-Net, refined, for digits whose topology the refinement changed), "
        "`barcodes.png` (barcodes before/after for two of them), `ambiguous.png` (the digit the classifier is least "
        "sure of, refined under three priors with lr 1e-3 so the change is visible).",
    ]
    write_results(args.out, "MNIST denoising with topological priors", sections, started)


READING = (
    'Topology: reproduced, and much more strongly than before the issue-10 fix. The refinement gave 99-100 % of the'
    ' reconstructions the Betti numbers of their class prior at every m (61 → 99 %, 44 → 100 %, 36 → 99 %, 21 → 99 '
    '% for m = 4, 6, 8, 10), in a median of a few steps (0.15-0.26 s per digit), with the MSE to the clean digit '
    'slightly lower at every m. (Before the fix, which computed the topological term on sigmoid(sigmoid(z)), the '
    'same table read 62 → 81, 45 → 76, 31 → 70, 22 → 63 % with 30 steps.) The clean digits themselves satisfy their'
    ' class prior only 81 % of the time (open 4s, looped 2s): the refinement imposes the prior even where the true '
    "digit does not have it. Accuracy: the direction of the paper, not its size. The classifier's accuracy rose at "
    'every m, by 0.4-1.2 points (fixed/broken 3/1, 11/6, 9/7, 20/14 of 500; McNemar p 0.33-0.80, not significant), '
    'where the paper gained 3-6 points. The sweep at m = 8 (100 digits, every row reported) shows the trade-off: '
    "the reference code's lr 1e-5 run for all 100 steps reaches 93 % topology and +1 net digit; larger steps (lr "
    '1e-3, or λ = 0.2) reach 99 % in 3-4 steps but break more digits than they fix (3/5, 1/2) and, at lr 1e-3, '
    'raise the MSE. The smallest change that fixes the Betti numbers at threshold 0.5 is a few pixels (a speck '
    'removed, a gap closed, MSE 0.0521 → 0.0519), which this classifier mostly does not notice. Differences from '
    'the paper: 500 instead of 1000 test digits, m = 12 not run, a 3-level U-Net trained 1000 steps on the 100 '
    'pairs, and a 2-layer CNN classifier at 95.8 % instead of 98.7 % on clean digits, all on 2 shared CPU cores.'
)


def figures(out, clf, clean, noisy, before, after, labels, records, net, iterations) -> None:
    import matplotlib.pyplot as plt

    changed = [i for i, r in enumerate(records) if r["iterations"] > 0][:6] or list(range(min(6, len(clean))))
    fig, axes = plt.subplots(4, len(changed), figsize=(1.4 * len(changed), 6), squeeze=False)
    for col, i in enumerate(changed):
        for row, (name, img) in enumerate((("clean", clean), ("corrupted", noisy), ("U-Net", before),
                                           ("refined", after))):
            ax = axes[row, col]
            ax.imshow(img[i, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            pred = classify(clf, img[i : i + 1])[0]
            betti = betti_numbers(img[i, 0] >= 0.5)
            ax.set_title(f"{name}: {pred} β={betti}", fontsize=6)
    save_figure(fig, out / "digits.png")

    fig, axes = plt.subplots(2, 2, figsize=(6, 4), squeeze=False)
    for row, i in enumerate(changed[:2]):
        plot_barcode(axes[row, 0], cubical_persistence(before[i, 0]), f"digit {labels[i]} U-Net")
        plot_barcode(axes[row, 1], cubical_persistence(after[i, 0]), f"digit {labels[i]} refined, prior {PRIORS[labels[i]]}")
    save_figure(fig, out / "barcodes.png")

    # An ambiguous digit: the one the classifier is least sure of among the U-Net outputs.
    with torch.no_grad():
        confidence = torch.softmax(clf(before), 1).max(1).values
    i = int(confidence.argmin())
    fig, axes = plt.subplots(1, 5, figsize=(7.5, 1.8))
    axes[0].imshow(noisy[i, 0], cmap="gray")
    axes[0].set_title(f"corrupted (true {labels[i]})", fontsize=6)
    axes[1].imshow(before[i, 0], cmap="gray", vmin=0, vmax=1)
    axes[1].set_title(f"U-Net: {classify(clf, before[i:i + 1])[0]}", fontsize=6)
    for ax, prior in zip(axes[2:], ((1, 0), (1, 1), (1, 2))):
        out_img, _ = refine_with_topology(net, noisy[i], prior, lambda_topo=0.02, lr=1e-3, iterations=iterations,
                                          stop_when_satisfied=True)
        ax.imshow(out_img[0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"prior {prior}: {classify(clf, out_img[None])[0]} β={betti_numbers(out_img[0] >= 0.5)}",
                     fontsize=6)
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
    save_figure(fig, out / "ambiguous.png")


if __name__ == "__main__":
    main()
