"""The ``monai-topo`` command line."""

from __future__ import annotations

import argparse
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monai-topo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("demo", help=demo.__doc__)
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bars", type=int, default=10, help="number of longest bars to print")
    p.add_argument("--connectivity", choices=CONNECTIVITIES, default=DEFAULT_CONNECTIVITY)
    p.set_defaults(func=demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
