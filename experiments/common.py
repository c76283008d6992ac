"""Shared pieces of the reproductions: command line, seeding, small MONAI U-Nets, tables and barcodes."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from monai.networks.nets import UNet  # noqa: E402
from monai.utils import set_determinism  # noqa: E402

from monai_topo.ph import PersistenceDiagram  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def parse_args(name: str, description: str) -> argparse.Namespace:
    """The command line every experiment shares: ``[--full | --smoke] [--out DIR] [--data DIR] [--seed N]``."""
    parser = argparse.ArgumentParser(description=description)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="paper-size run (hours on 2 CPU cores)")
    size.add_argument("--smoke", action="store_true", help="tiny run for the tests (seconds)")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / name)
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.size = "full" if args.full else "smoke" if args.smoke else "default"
    args.out.mkdir(parents=True, exist_ok=True)
    set_determinism(seed=args.seed)
    # Other jobs share the machine's two cores; more threads only thrash.
    torch.set_num_threads(1)
    return args


def unet(
    spatial_dims: int = 2, channels: Sequence[int] = (16, 32, 64), num_res_units: int = 1, out_channels: int = 1
) -> UNet:
    """A small MONAI U-Net, one input channel and ``out_channels`` output (logit) channels."""
    return UNet(
        spatial_dims=spatial_dims,
        in_channels=1,
        out_channels=out_channels,
        channels=tuple(channels),
        strides=(2,) * (len(channels) - 1),
        num_res_units=num_res_units,
    )


def train_on_tensors(
    network: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    steps: int,
    batch_size: int = 8,
    lr: float = 1e-3,
    augment: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    seed: int = 0,
) -> list[float]:
    """Adam on random minibatches of in-memory tensors; returns the loss trace."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    network.train()
    trace = []
    for _ in range(steps):
        index = torch.randint(len(inputs), (min(batch_size, len(inputs)),), generator=generator)
        x, y = inputs[index], targets[index]
        if augment is not None:
            x, y = augment(x, y)
        loss = loss_function(network(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        trace.append(float(loss.detach()))
    network.eval()
    return trace


def dihedral_augment(generator: torch.Generator) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Random flip and 90° rotation of a 2D batch, the same for inputs and targets."""

    def augment(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, flip = (int(v) for v in torch.randint(4, (2,), generator=generator))
        x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
        if flip % 2:
            x, y = x.flip(-1), y.flip(-1)
        return x, y

    return augment


@torch.no_grad()
def predict(network: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Sigmoid probabilities of ``network`` on ``inputs`` (N, 1, *spatial), in batches."""
    network.eval()
    return torch.cat([torch.sigmoid(network(inputs[i : i + batch_size])) for i in range(0, len(inputs), batch_size)])


def mean_se(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    values = np.asarray(list(values), float)
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return float(values.mean()), float(se)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A GitHub markdown table; floats are written as they come (format them first)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out: Path, title: str, sections: Sequence[str], started: float) -> Path:
    """Write ``results.md``: a title, the given markdown sections and the run time."""
    text = f"# {title}\n\n" + "\n\n".join(sections) + f"\n\nRun time: {time.perf_counter() - started:.0f} s on this machine.\n"
    path = out / "results.md"
    path.write_text(text)
    return path


def plot_barcode(ax: plt.Axes, diagram: PersistenceDiagram, title: str = "", max_bars: int = 12) -> None:
    """Barcode of a super-level diagram: one horizontal bar [death, birth] per feature, coloured by dimension."""
    bars = diagram.to_numpy()
    bars = bars[np.argsort(bars[:, 2] - bars[:, 1])][:max_bars]  # longest first (births > deaths)
    colours = {0: "tab:blue", 1: "tab:orange", 2: "tab:green"}
    for row, (dim, birth, death) in enumerate(bars):
        ax.plot([death, birth], [row, row], color=colours[int(dim)], lw=3)
    ax.axvline(0.5, color="grey", lw=0.5, ls="--")
    ax.set_xlim(0, 1)
    ax.set_ylim(-1, max(len(bars), 1))
    ax.invert_xaxis()  # filtration runs from 1 down to 0
    ax.set_yticks([])
    ax.set_xlabel("probability (H0 blue, H1 orange, H2 green)", fontsize=6)
    ax.tick_params(labelsize=6)
    ax.set_title(title, fontsize=7)


def save_figure(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
