"""SemiSupervisedTrainer (Eq. 6): both loss terms, the supervised-only phase, priors, MONAI handlers, DDP."""

import logging
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset
from monai.handlers import StatsHandler
from monai.losses import DiceLoss
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from monai_topo.engines import SemiSupervisedTrainer

LOSS_TERMS = ("loss", "sup_loss", "topo_loss")


class RecordingTopoLoss:
    """Stand-in for a topological loss: mean foreground probability, recording each call."""

    def __init__(self):
        self.calls = []

    def __call__(self, pred, prior=None):
        self.calls.append({"batch_size": pred.shape[0], "prior": prior})
        return torch.sigmoid(pred).mean()


def make_items(n, seed, labelled=True, priors=None):
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        item = {"image": torch.rand(1, 12, 12, generator=g)}
        if labelled:
            item["label"] = (item["image"] > 0.5).float()
        if priors is not None:
            item["prior"] = list(priors[i])
        items.append(item)
    return items


def tiny_network(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))


def make_trainer(network, n_labelled=4, n_unlabelled=3, lr=0.1, unlabelled_items=None, **kwargs):
    kwargs.setdefault("topo_loss_function", RecordingTopoLoss())
    unlabelled_items = make_items(n_unlabelled, 1, labelled=False) if unlabelled_items is None else unlabelled_items
    return SemiSupervisedTrainer(
        device="cpu",
        max_epochs=kwargs.pop("max_epochs", 1),
        train_data_loader=DataLoader(Dataset(make_items(n_labelled, 0)), batch_size=2),
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=lr),
        loss_function=DiceLoss(sigmoid=True),
        unlabelled_data_loader=DataLoader(Dataset(unlabelled_items), batch_size=2),
        **kwargs,
    )


def record_losses(trainer):
    rows = []

    def record(engine):
        rows.append((engine.state.epoch, *(float(engine.state.output[0][k]) for k in LOSS_TERMS)))

    trainer.add_event_handler(Events.ITERATION_COMPLETED, record)
    return rows


def test_total_loss_is_supervised_plus_weighted_topological():
    trainer = make_trainer(tiny_network(), lambda_topo=0.3, max_epochs=2)
    rows = record_losses(trainer)
    trainer.run()
    assert len(rows) == 4  # 2 labelled batches per epoch
    for _, loss, sup, topo in rows:
        assert topo > 0 and sup > 0
        assert loss == pytest.approx(sup + 0.3 * topo, rel=1e-6)
    assert len(trainer.topo_loss_function.calls) == 4


@pytest.mark.parametrize("batch_size", [2, 3])
def test_one_step_equals_eq6_written_from_the_paper(batch_size):
    """Dice(labelled) + λ·mean_b Eq. 3(sigmoid(f(X_b)); prior_b) with gudhi, per-item priors from a DataLoader."""
    from monai_topo.losses import TopologicalPriorLoss

    from eq_reference import eq3

    lam, lr = 0.5, 0.5
    priors = [(1, 0), (2, 1), (1, 2)][:batch_size]  # transposed, they would read as other priors
    labelled = make_items(2, 0)
    unlabelled = make_items(batch_size, 1, labelled=False, priors=priors)
    reference = tiny_network()
    x, y = torch.stack([i["image"] for i in labelled]), torch.stack([i["label"] for i in labelled])
    xu = torch.stack([i["image"] for i in unlabelled])
    probs = torch.sigmoid(reference(xu))
    topo = torch.stack([eq3(probs[b, 0], priors[b]) for b in range(batch_size)]).mean()
    total = DiceLoss(sigmoid=True)(reference(x), y) + lam * topo
    grads = torch.autograd.grad(total, list(reference.parameters()))
    expected = [p.detach() - lr * g for p, g in zip(reference.parameters(), grads)]

    network = tiny_network()
    trainer = SemiSupervisedTrainer(
        device="cpu", max_epochs=1, network=network, optimizer=torch.optim.SGD(network.parameters(), lr=lr),
        train_data_loader=DataLoader(Dataset(labelled), batch_size=2), loss_function=DiceLoss(sigmoid=True),
        unlabelled_data_loader=DataLoader(Dataset(unlabelled), batch_size=batch_size),
        topo_loss_function=TopologicalPriorLoss(sigmoid=True), lambda_topo=lam,
    )
    trainer.run()
    assert float(trainer.state.output[0]["topo_loss"]) == pytest.approx(float(topo), rel=1e-5)
    for got, want in zip(network.parameters(), expected):
        torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)


def test_topological_term_starts_at_topo_start_epoch():
    topo = RecordingTopoLoss()
    trainer = make_trainer(tiny_network(), max_epochs=4, topo_start_epoch=3, topo_loss_function=topo)
    rows = record_losses(trainer)
    trainer.run()
    for epoch, loss, sup, topo_value in rows:
        if epoch < 3:
            assert topo_value == 0 and loss == pytest.approx(sup)
        else:
            assert topo_value > 0
    assert len(topo.calls) == 4  # epochs 3 and 4, two iterations each


def test_unlabelled_loader_cycles():
    """3 unlabelled items in batches of 2 give batch sizes 2, 1, 2, 1, ... across 6 iterations."""
    topo = RecordingTopoLoss()
    trainer = make_trainer(tiny_network(), n_labelled=6, max_epochs=2, topo_loss_function=topo)
    trainer.run()
    assert [c["batch_size"] for c in topo.calls] == [2, 1] * 3


def test_gradient_of_both_terms_reaches_the_network():
    """One SGD step equals the step computed by hand from Dice(labelled) + λ·topo(unlabelled)."""
    lam, lr = 5.0, 0.5
    reference = tiny_network()
    labelled = make_items(2, 0)
    unlabelled = make_items(2, 1, labelled=False)
    x, y = torch.stack([i["image"] for i in labelled]), torch.stack([i["label"] for i in labelled])
    xu = torch.stack([i["image"] for i in unlabelled])
    total = DiceLoss(sigmoid=True)(reference(x), y) + lam * torch.sigmoid(reference(xu)).mean()
    grads = torch.autograd.grad(total, list(reference.parameters()))
    expected = [p.detach() - lr * g for p, g in zip(reference.parameters(), grads)]

    updated = {}
    for weight in (lam, 0.0):
        network = tiny_network()
        make_trainer(network, n_labelled=2, n_unlabelled=2, lr=lr, lambda_topo=weight).run()
        updated[weight] = [p.detach() for p in network.parameters()]
    for got, want in zip(updated[lam], expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert any((a - b).abs().max() > 1e-4 for a, b in zip(updated[lam], updated[0.0]))


def test_per_item_priors_reach_the_loss_one_per_item():
    priors = [(1, 1), (1, 0), (1, 1)]
    topo = RecordingTopoLoss()
    unlabelled = make_items(3, 1, labelled=False, priors=priors)
    trainer = make_trainer(tiny_network(), n_labelled=4, unlabelled_items=unlabelled, topo_loss_function=topo)
    trainer.run()
    assert topo.calls[0]["prior"] == [[1, 1], [1, 0]]
    assert topo.calls[1]["prior"] == [[1, 1]]
    # ranges (min, max) per dimension come through per item too
    topo = RecordingTopoLoss()
    unlabelled = make_items(2, 1, labelled=False, priors=[[(1, 1), (0, 2)], [(1, 1), (1, 1)]])
    make_trainer(tiny_network(), n_labelled=2, unlabelled_items=unlabelled, topo_loss_function=topo).run()
    assert topo.calls[0]["prior"] == [[[1, 1], [0, 2]], [[1, 1], [1, 1]]]
    # prior_key=None never passes priors
    topo = RecordingTopoLoss()
    unlabelled = make_items(2, 1, labelled=False, priors=priors)
    make_trainer(tiny_network(), n_labelled=2, unlabelled_items=unlabelled, topo_loss_function=topo,
                 prior_key=None).run()
    assert topo.calls[0]["prior"] is None


def test_with_the_real_topological_prior_loss():
    losses = pytest.importorskip("monai_topo.losses")
    if not hasattr(losses, "TopologicalPriorLoss"):
        pytest.skip("monai_topo.losses.TopologicalPriorLoss not available")
    unlabelled = make_items(3, 1, labelled=False, priors=[(1, 1), (1, 0), (1, 1)])
    trainer = make_trainer(tiny_network(), topo_loss_function=losses.TopologicalPriorLoss(sigmoid=True),
                           unlabelled_items=unlabelled, lambda_topo=0.01)
    rows = record_losses(trainer)
    trainer.run()
    assert all(topo > 0 for *_, topo in rows)


def test_stats_handler_logs_both_terms(capsys):
    trainer = make_trainer(tiny_network())
    StatsHandler(name="semi", output_transform=lambda output: {k: output[0][k] for k in LOSS_TERMS}).attach(trainer)
    logging.getLogger("semi").setLevel(logging.INFO)
    trainer.run()
    logged = capsys.readouterr()
    assert "topo_loss" in logged.out + logged.err and "sup_loss" in logged.out + logged.err


def test_built_from_a_bundle_style_config():
    config = {
        "network": {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 3,
                    "padding": 1},
        "labelled": "$[{'image': torch.rand(2, 1, 8, 8), 'label': torch.ones(2, 1, 8, 8)}]",
        "unlabelled": "$[{'image': torch.rand(2, 1, 8, 8), 'prior': torch.tensor([[1, 1], [1, 1]])}]",
        "trainer": {
            "_target_": "monai_topo.engines.SemiSupervisedTrainer",
            "device": "cpu",
            "max_epochs": 2,
            "train_data_loader": "@labelled",
            "network": "@network",
            "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 0.01},
            "loss_function": {"_target_": "DiceLoss", "sigmoid": True},
            "unlabelled_data_loader": "@unlabelled",
            "topo_loss_function": "$lambda pred, prior: pred.sigmoid().mean()",
            "lambda_topo": 0.01,
            "topo_start_epoch": 2,
        },
    }
    parser = ConfigParser(config)
    trainer = parser.get_parsed_content("trainer")
    trainer.run()
    assert trainer.state.epoch == 2 and float(trainer.state.output[0]["topo_loss"]) > 0


@pytest.mark.parametrize("kwargs,name", [
    ({"lambda_topo": -1.0}, "lambda_topo"),
    ({"lambda_topo": float("nan")}, "lambda_topo"),
    ({"topo_start_epoch": 0}, "topo_start_epoch"),
    ({"topo_start_epoch": 1.5}, "topo_start_epoch"),
    ({"topo_loss_function": "dice"}, "topo_loss_function"),
])
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        make_trainer(tiny_network(), **kwargs)


def test_empty_unlabelled_loader_is_reported():
    trainer = make_trainer(tiny_network(), unlabelled_items=[])
    with pytest.raises(ValueError, match="unlabelled_data_loader"):
        trainer.run()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world_size, port, results):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        network = DistributedDataParallel(tiny_network())
        labelled = Dataset(make_items(4, 0))
        unlabelled = Dataset(make_items(4, 1, labelled=False, priors=[(1, 1)] * 4))
        trainer = SemiSupervisedTrainer(
            device="cpu",
            max_epochs=2,
            train_data_loader=DataLoader(labelled, batch_size=1, sampler=DistributedSampler(labelled)),
            network=network,
            optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
            loss_function=DiceLoss(sigmoid=True),
            unlabelled_data_loader=DataLoader(unlabelled, batch_size=1, sampler=DistributedSampler(unlabelled)),
            topo_loss_function=RecordingTopoLoss(),
            lambda_topo=1.0,
        )
        trainer.run()
        results[rank] = torch.cat([p.detach().flatten() for p in network.parameters()])
    finally:
        dist.destroy_process_group()


def test_distributed_data_parallel_network():
    """A DDP network goes through two forward passes (labelled, unlabelled) and one backward per step."""
    results = {}
    _ddp_worker(0, 1, _free_port(), results)
    assert not torch.equal(results[0], torch.cat([p.detach().flatten() for p in tiny_network().parameters()]))


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_distributed_data_parallel_two_processes():
    """Two gloo processes: training runs to the end and the replicas stay identical."""
    results = mp.Manager().dict()
    # spawn, not fork: a forked child deadlocks in OpenMP once the parent has run a parallel torch op
    mp.spawn(_ddp_worker, args=(2, _free_port(), results), nprocs=2, join=True)
    torch.testing.assert_close(results[0], results[1])
