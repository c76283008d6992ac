"""How well the myocardium masks of a Sunnybrook-style folder sit on their images, without any network.

For each labelled slice whose mask is a ring, the mask is moved by every whole-pixel shift up to
``--max_shift`` and scored by the contrast between the mean intensity of the blood pool it encloses
and that of the muscle it covers (bright blood, dark myocardium in cine MRI): a mask drawn on the
image's edges scores best unshifted. The script prints the shift that scores best per slice and the
Dice between each mask and itself moved by that shift: the Dice that a segmentation lying exactly
on the image's edges would get against these masks::

    python bundles/cardiac_myocardium_topo/scripts/label_alignment.py --dataset_dir ../shared/data/sunnybrook_myo
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from monai.transforms import LoadImage
from scipy import ndimage

from monai_topo.data import patient_of


def best_shift(image: np.ndarray, mask: np.ndarray, max_shift: int) -> tuple[tuple[int, int], float]:
    """The shift ``(rows, columns)`` of ``mask`` with the largest blood-minus-muscle contrast, and that gain."""
    cavity = ndimage.binary_fill_holes(mask) & ~mask
    image = (image - image.mean()) / image.std()

    def contrast(shift: tuple[int, int]) -> float:
        return float(image[np.roll(cavity, shift, (0, 1))].mean() - image[np.roll(mask, shift, (0, 1))].mean())

    shifts = [(dy, dx) for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)]
    best = max(shifts, key=contrast)
    return best, contrast(best) - contrast((0, 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--max_shift", type=int, default=3, help="largest shift tried, in pixels per axis")
    args = parser.parse_args()
    root = Path(args.dataset_dir)
    load = LoadImage(image_only=True)
    rows = []
    for item in json.loads((root / "datalist.json").read_text())["labelled"]:
        mask = np.asarray(load(root / item["label"])) > 0
        if ndimage.binary_fill_holes(mask).sum() == mask.sum():
            continue  # no blood pool inside: not a ring
        shift, gain = best_shift(np.asarray(load(root / item["image"]), float), mask, args.max_shift)
        moved = np.roll(mask, shift, (0, 1))
        dice = float(2 * (moved & mask).sum() / (2 * mask.sum()))
        rows.append({"image": Path(item["image"]).name, "shift": list(shift), "contrast_gain": gain, "dice": dice})
        print(f"{rows[-1]['image']}: best shift {shift} (contrast +{gain:.3f}), Dice of the mask with itself moved {dice:.3f}")
    for patient in sorted({patient_of(r["image"]) for r in rows}):
        group = [r for r in rows if patient_of(r["image"]) == patient]
        print(f"{patient}: mean shift {np.mean([r['shift'] for r in group], 0).round(2).tolist()} px, "
              f"mean Dice {np.mean([r['dice'] for r in group]):.3f}")
    print(f"all {len(rows)} ring slices: mean Dice of a mask with itself moved to the image's edges "
          f"{np.mean([r['dice'] for r in rows]):.3f}")


if __name__ == "__main__":
    main()
