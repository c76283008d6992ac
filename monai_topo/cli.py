"""The ``monai-topo`` command line."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from monai_topo.data import noisy_ring
from monai_topo.ph import CONNECTIVITIES, DEFAULT_CONNECTIVITY, betti_numbers, cubical_persistence


def demo(args: argparse.Namespace) -> int:
    """Print the Betti numbers and barcode of a built-in noisy ring."""
    image = torch.from_numpy(noisy_ring(args.size, seed=args.seed))
    diagram = cubical_persistence(image, connectivity=args.connectivity)
    print(f"built-in noisy ring {tuple(image.shape)}, connectivity={args.connectivity!r}")
    print(f"Betti numbers at 0.5 from PH:      {diagram.betti(0.5)}")
    print(f"Betti numbers of the mask x >= 0.5: {betti_numbers(image >= 0.5, args.connectivity)}")
    order = torch.argsort(diagram.lengths(), descending=True)[: args.bars]
    print(f"{'dim':>3} {'birth':>7} {'death':>7} {'length':>7}  barcode (0 ... 1)")
    for i in order.tolist():
        birth, death = float(diagram.births[i]), float(diagram.deaths[i])
        bar = " " * round(death * 40) + "#" * max(1, round((birth - death) * 40))
        print(f"{int(diagram.dims[i]):>3} {birth:7.3f} {death:7.3f} {birth - death:7.3f}  |{bar:<40}|")
    return 0


def infer(args: argparse.Namespace) -> int:
    """Segment a folder of images with a bundle; exit code 1 when a case failed."""
    from monai_topo.inference import run_batch
    from monai_topo.threads import configure_threads
    from monai_topo.validation import check_int

    try:
        # This command owns its process: give torch (and so the PH engine) the cores that are free.
        configure_threads(None if args.threads is None else check_int(args.threads, "--threads", minimum=1))
        rows = run_batch(
            args.bundle,
            args.input,
            args.output,
            labels=args.labels,
            prior=args.prior,
            postprocess=False if args.no_postprocess else None,
            overwrite=args.overwrite,
            device=args.device,
            progress=not args.quiet,
        )
    except (ValueError, OSError) as error:  # setup errors: one line, exit code 2
        print(f"monai-topo infer: error: {_one_line(error)}", file=sys.stderr)
        return 2
    failed = [row for row in rows if row["status"] == "failed"]
    for row in failed:
        print(f"failed: {row['case']}: {row['message']}", file=sys.stderr)
    return 1 if failed else 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def bundle_list(args: argparse.Namespace) -> int:
    """List the bundles found by name (shipped with the package, and in $MONAI_TOPO_BUNDLES)."""
    from monai_topo.inference import list_bundles

    for name, root in list_bundles().items():
        print(f"{name}\t{root}")
    return 0


def bundle_copy(args: argparse.Namespace) -> int:
    """Copy a bundle into a writable folder, to train it or run it with monai.bundle."""
    from monai_topo.inference import copy_bundle

    try:
        root = copy_bundle(args.name, args.destination)
    except (ValueError, OSError) as error:
        print(f"monai-topo bundle copy: error: {_one_line(error)}", file=sys.stderr)
        return 2
    print(root)
    return 0


def betti(args: argparse.Namespace) -> int:
    """Print the Betti numbers of every label of a segmentation file."""
    from monai_topo.inference import label_betti_table, load_image

    try:
        table = label_betti_table(load_image(args.file), args.connectivity)
    except Exception as error:  # unreadable or malformed file: say so, no traceback
        print(f"monai-topo betti: error: cannot read {args.file}: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"file": args.file, "connectivity": args.connectivity, "labels": table}))
        return 0
    print(f"{args.file} (connectivity={args.connectivity!r})")
    dims = len(table[0]["betti"]) if table else 0
    print(f"{'label':>6} {'voxels':>10} " + " ".join(f"{'b' + str(k):>4}" for k in range(dims)))
    for row in table:
        print(f"{row['label']:>6} {row['voxels']:>10} " + " ".join(f"{b:>4}" for b in row["betti"]))
    if not table:
        print("no labels (the file is all background)")
    return 0


def _prior(text: str) -> list:
    """``1,1`` or JSON such as ``[1,[0,2]]`` (ranges as ``[min, max]``, ``null`` for no maximum)."""
    try:
        prior = json.loads(text if text.lstrip().startswith("[") else f"[{text}]")
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a prior like 1,1 or [1,[0,2]]: {error}") from error
    return prior


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monai-topo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("demo", help=demo.__doc__)
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bars", type=int, default=10, help="number of longest bars to print")
    p.add_argument("--connectivity", choices=CONNECTIVITIES, default=DEFAULT_CONNECTIVITY)
    p.set_defaults(func=demo)

    p = commands.add_parser("infer", help=infer.__doc__, description=infer.__doc__)
    p.add_argument("--bundle", required=True, help="bundle folder, or a name from `monai-topo bundle list`")
    p.add_argument("--input", required=True, help="folder of images (.nii.gz, .nii, .mha, .nrrd, ...) or a glob")
    p.add_argument("--output", required=True, help="output folder (not inside the input folder)")
    p.add_argument("--labels", help="folder or glob of label maps named like the images: adds Dice and Betti error")
    p.add_argument("--prior", type=_prior, help="Betti prior per item, e.g. 1,1 or [1,[0,1]] (default: the bundle's)")
    p.add_argument("--no-postprocess", action="store_true", help="keep the network's prediction, no refinement")
    p.add_argument("--overwrite", action="store_true", help="redo cases whose output exists")
    p.add_argument("--device", help="e.g. cpu or cuda:0 (default: the bundle's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, help="torch and PH threads (default: the free cores of this process, "
                   "shared among torchrun ranks; or MONAI_TOPO_NUM_THREADS)")
    p.set_defaults(func=infer)

    p = commands.add_parser("bundle", help="list the shipped bundles or copy one into a folder")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("list", help=bundle_list.__doc__, description=bundle_list.__doc__)
    q.set_defaults(func=bundle_list)
    q = actions.add_parser("copy", help=bundle_copy.__doc__, description=bundle_copy.__doc__)
    q.add_argument("name", help="bundle name (see `monai-topo bundle list`) or folder")
    q.add_argument("destination", help="folder to copy into; the bundle lands in DESTINATION/NAME")
    q.set_defaults(func=bundle_copy)

    p = commands.add_parser("betti", help=betti.__doc__, description=betti.__doc__)
    p.add_argument("file", help="segmentation file (NIfTI, or what SimpleITK reads: .mha, .nrrd, ...)")
    p.add_argument("--connectivity", choices=CONNECTIVITIES, default=DEFAULT_CONNECTIVITY)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=betti)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
