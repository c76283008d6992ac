"""Leave-one-patient-out evaluation of the cardiac bundle on a Sunnybrook-style folder.

Train one fold per patient with the bundle itself (nothing here trains), e.g. for patient P::

    python -m monai.bundle run --bundle_root $B --config_file $B/configs/train.json \
        --dataset_dir ../shared/data/sunnybrook_myo --test_patients "['P']" --ckpt_dir FOLDS/fold_P

then score every labelled slice of each patient with the weights of the fold that never saw it::

    python bundles/cardiac_myocardium_topo/scripts/evaluate_lopo.py --dataset_dir ../shared/data/sunnybrook_myo \
        --folds_dir FOLDS --output lopo.json

Each slice goes through the bundle's own ``preprocessing`` (resampling, intensity scaling, and the crop around the
heart that the fold's network finds in the whole slice), ``window_inferer`` and ``refine_args`` (inference.json;
what its ``inferer`` does on a 2D item); the inference time per slice includes the preprocessing;
the prediction is thresholded at 0.5 and resampled back to the slice's grid (``Invertd``, nearest neighbour), as
inference.json's ``postprocessing`` does, and scored there against the original mask: Dice, whether it is one ring (Betti numbers equal to ``prior``), and the Betti error
Σ_k |β_k(pred) − β_k(label)| (full connectivity), without and with the Eq. 5 refinement.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Invertd, LoadImage

from monai_topo.data import patient_of, sunnybrook_datalist
from monai_topo.ph import betti_numbers
from monai_topo.transforms import refine_with_topology

BUNDLE = Path(__file__).resolve().parents[1]


def dice(pred: np.ndarray, label: np.ndarray) -> float:
    return float(2 * np.logical_and(pred, label).sum() / max(pred.sum() + label.sum(), 1))


def score(pred: np.ndarray, label: np.ndarray, prior) -> dict:
    betti, betti_label = betti_numbers(pred), betti_numbers(label)
    return {
        "dice": dice(pred, label),
        "betti": list(betti),
        "ring": list(betti) == list(prior),
        "betti_error": int(sum(abs(a - b) for a, b in zip(betti, betti_label))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--folds_dir", required=True, help="holds fold_<patient>/model.pt for every patient")
    parser.add_argument("--output", default="lopo.json")
    parser.add_argument("--no_refine", action="store_true", help="skip Eq. 5")
    parser.add_argument("--patients", nargs="*", help="score only these patients (e.g. one process per fold)")
    parser.add_argument("--refine_args", type=json.loads, default={},
                        help='JSON overriding the bundle\'s refine_args, e.g. \'{"lr": 0.001}\' (default: the bundle\'s)')
    parser.add_argument("--combine", nargs="*", help="summarise the slices of these outputs instead of scoring")
    args = parser.parse_args()
    if args.combine:
        rows = [row for path in args.combine for row in json.loads(Path(path).read_text())["slices"]]
        return write(rows, args.output)
    torch.manual_seed(0)

    config = ConfigParser()
    config.read_config(str(BUNDLE / "configs" / "inference.json"))
    config["bundle_root"] = str(BUNDLE)
    config["device"] = "$torch.device('cpu')"
    # the preprocessing's LocalisedCropd finds the heart with this same instance: each fold's weights go into it
    network = config.get_parsed_content("network")
    preprocessing, inferer = config.get_parsed_content("preprocessing"), config.get_parsed_content("window_inferer")
    prior, refine_args = config.get_parsed_content("prior"), dict(config.get_parsed_content("refine_args"), **args.refine_args)
    threshold = refine_args["threshold"]
    # as inference.json's postprocessing: threshold on the network's grid, then back to the slice's (nearest)
    invert = Invertd(keys="pred", transform=preprocessing, orig_keys="image", nearest_interp=True)
    load = LoadImage(image_only=True, ensure_channel_first=True)

    items = sunnybrook_datalist(args.dataset_dir, prior=prior, label_betti=prior)["training"]
    rows = []
    for patient in sorted(args.patients or {patient_of(i["image"]) for i in items}):
        state = torch.load(Path(args.folds_dir) / f"fold_{patient}" / "model.pt", map_location="cpu")
        network.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        network.eval()
        for item in (i for i in items if patient_of(i["image"]) == patient):
            start = time.perf_counter()
            data = preprocessing({"image": item["image"]})
            label = load(item["label"])[0].numpy() > 0
            with torch.no_grad():
                probs = torch.sigmoid(inferer(data["image"][None], network))[0]
            seconds = time.perf_counter() - start

            def on_grid(p: torch.Tensor, data: dict = data) -> np.ndarray:
                pred = MetaTensor((p.as_subclass(torch.Tensor) >= threshold).float(), meta=data["image"].meta)
                return invert(dict(data, pred=pred))["pred"][0].numpy() > 0.5

            row = {"patient": patient, "image": Path(item["image"]).name, "seconds": seconds,
                   "plain": score(on_grid(probs), label, prior)}
            if not args.no_refine:
                refined, record = refine_with_topology(network, data["image"], prior, inferer=inferer, **refine_args)
                row["refined"] = dict(score(on_grid(refined), label, prior), seconds=record["seconds"],
                                      iterations=record["iterations"])
            rows.append(row)
            print(json.dumps(row), flush=True)
    write(rows, args.output)


def write(rows: list[dict], output: str) -> None:
    """Means over the slices (and Dice per patient), without and with Eq. 5, to ``output``."""
    summary = {"slices": len(rows)}
    for key in ("plain", "refined"):
        if all(key in r for r in rows):
            group = [r[key] for r in rows]
            summary[key] = {m: float(np.mean([g[m] for g in group])) for m in ("dice", "ring", "betti_error")}
            summary[key]["per_patient_dice"] = {
                p: float(np.mean([r[key]["dice"] for r in rows if r["patient"] == p])) for p in sorted({r["patient"] for r in rows})}
    summary["inference_seconds_per_slice"] = float(np.mean([r["seconds"] for r in rows]))
    if all("refined" in r for r in rows):
        summary["refinement_seconds_per_slice"] = float(np.mean([r["refined"]["seconds"] for r in rows]))
        summary["refinement_seconds_max"] = float(np.max([r["refined"]["seconds"] for r in rows]))
    Path(output).write_text(json.dumps({"summary": summary, "slices": rows}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
