"""Tests of Betti-number priors as plain data, and of per-item priors read from MONAI batches."""

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, decollate_batch

from monai_topo.ph import betti_numbers
from monai_topo.priors import (
    BettiPrior,
    batch_prior_items,
    parse_batch_priors,
    parse_class_priors,
    parse_prior,
    prior_satisfied,
)

from shapes import ring


def test_parse_prior_forms():
    assert parse_prior((1, 1)) == BettiPrior((1, 1), (1, 1))
    assert parse_prior([1, (0, 2)], spatial_ndim=2) == BettiPrior((1, 0), (1, 2))
    assert parse_prior((1, (0, None), 0)) == BettiPrior((1, 0, 0), (1, None, 0))
    assert parse_prior((1, (0, float("inf")))) == BettiPrior((1, 0), (1, None))
    assert parse_prior(torch.tensor([[1, 1], [0, 3]])) == BettiPrior((1, 0), (1, 3))
    assert parse_prior(np.array([1.0, 0.0])) == BettiPrior((1, 0), (1, 0))
    assert parse_prior(BettiPrior((1,), (2,))) == BettiPrior((1,), (2,))


@pytest.mark.parametrize(
    "prior, spatial_ndim, error, match",
    [
        ((-1, 0), None, ValueError, ">= 0"),
        ((1, (0, -2)), None, ValueError, ">= 0"),
        ((1, 1, 1), 2, ValueError, "only homology dimensions 0..1"),
        ((1, 0, 0, 0), None, ValueError, "at most 3"),
        ((1, (3, 1)), None, ValueError, "min > max"),
        ((), None, ValueError, "empty"),
        ((1.5,), None, ValueError, "whole number"),
        ((True, 0), None, TypeError, "whole number"),
        (("1", 0), None, TypeError, "whole number"),
        ((1, (0, 1, 2)), None, ValueError, "pair"),
        (1, None, TypeError, "sequence"),
        ("11", None, TypeError, "sequence"),
        ((1, 1), 4, ValueError, "spatial_ndim"),
    ],
)
def test_parse_prior_rejects(prior, spatial_ndim, error, match):
    with pytest.raises(error, match=match):
        parse_prior(prior, spatial_ndim)


def test_parse_batch_priors():
    assert parse_batch_priors(torch.tensor([[1, 0], [1, 1]]), 2) == [parse_prior((1, 0)), parse_prior((1, 1))]
    ranges = torch.tensor([[[1, 1], [0, 2]], [[1, 2], [1, 1]]])
    assert parse_batch_priors(ranges, 2) == [parse_prior((1, (0, 2))), parse_prior(((1, 2), 1))]
    assert parse_batch_priors([(1,), (2, (0, None))], 2)[1] == BettiPrior((2, 0), (2, None))
    with pytest.raises(ValueError, match="2 per-item priors for a batch of 3"):
        parse_batch_priors([(1,), (1,)], 3)
    with pytest.raises(ValueError, match=r"prior\[1\]\[0\] must be >= 0"):
        parse_batch_priors([(1,), (-1,)], 2)
    with pytest.raises(ValueError, match=r"shape \(B, d\)"):
        parse_batch_priors(torch.tensor([1, 1]), 2)


def test_parse_class_priors():
    parsed = parse_class_priors({2: (1, 1), (2, 1): (1, 0)}, spatial_ndim=2)
    assert parsed == {(2,): parse_prior((1, 1)), (1, 2): parse_prior((1, 0))}
    for bad, match in [
        ({}, "non-empty"),
        ({-1: (1,)}, "channel index"),
        ({(1, 1): (1,)}, "repeats"),
        ({(1, 2): (1,), (2, 1): (1,)}, "twice"),
        ({1: (1, -1)}, ">= 0"),
    ]:
        with pytest.raises((ValueError, TypeError), match=match):
            parse_class_priors(bad)


def test_prior_satisfied():
    assert prior_satisfied((1, 1), (1, 1))
    assert not prior_satisfied((2, 1), (1, 1))
    assert prior_satisfied((1, 3), (1, (0, None)))
    assert prior_satisfied((1, 5, 0), (1,))  # unconstrained dimensions are not checked
    assert prior_satisfied(betti_numbers(ring()), (1, (1, 2)))
    with pytest.raises(ValueError, match="fewer dimensions"):
        prior_satisfied((1,), (1, 1))


# Non-symmetric per-item priors: transposing them gives other, valid-looking priors.
ITEM_PRIORS = [[1, 0], [2, 1], [1, 2]]
RANGE_PRIORS = [[1, [0, 2]], [2, [1, float("inf")]], [1, [0, 0]]]


@pytest.mark.parametrize("batch_size", [2, 3])
@pytest.mark.parametrize("priors", [ITEM_PRIORS, RANGE_PRIORS], ids=["exact", "ranges"])
def test_priors_collated_by_a_dataloader_reach_their_items(batch_size, priors):
    data = [{"prior": p} for p in priors[:batch_size]]
    batch = next(iter(DataLoader(Dataset(data), batch_size=batch_size)))
    # default collation transposes the lists: one tensor per homology dimension
    assert isinstance(batch["prior"], list) and len(batch["prior"]) == 2
    expected = [parse_prior(p) for p in priors[:batch_size]]
    assert parse_batch_priors(batch["prior"], batch_size) == expected
    # and each item after decollation (as in an evaluator's postprocessing) still reads its own
    items = decollate_batch(batch)
    assert [parse_prior(item["prior"]) for item in items] == expected


def test_collated_form_with_the_wrong_batch_size_names_the_fix():
    collated = [torch.tensor([1, 2, 1]), torch.tensor([0, 1, 2])]
    with pytest.raises(ValueError, match=r"list of 2 tuples"):
        batch_prior_items(collated, 2)


def test_numpy_rows_and_none_stay_per_item():
    assert batch_prior_items([np.array([1, 0]), None], 2) == [[1, 0], None]
    assert batch_prior_items(np.array([[1, 0], [2, 1]]), 2) == [[1, 0], [2, 1]]


def test_rows_of_one_tensor_are_one_prior_per_item_even_when_batch_size_equals_dimensions():
    rows = list(torch.tensor([[1, 0], [2, 1]]))
    assert batch_prior_items(rows, 2) == [[1, 0], [2, 1]]
    collated = [torch.tensor([1, 2]), torch.tensor([0, 1])]
    assert batch_prior_items(collated, 2) == [[1, 0], [2, 1]]


# ------------------------------------------------- every consumer, fed by a real DataLoader


def _shape_items():
    """Masks whose Betti numbers are their own, non-symmetric priors: (1, 0), (2, 1), (1, 2)."""
    from shapes import disc, figure_eight

    canvas = lambda m: np.pad(m, [(0, 40 - n) for n in m.shape]).astype(np.float32)  # noqa: E731
    ring_and_disc = canvas(ring(21))
    ring_and_disc[25:35, 25:35] = 1
    masks = [canvas(disc(21)), ring_and_disc, canvas(figure_eight()[:, :40])]
    priors = [[1, 0], [2, 1], [1, 2]]
    assert [betti_numbers(m > 0.5) for m in masks] == [tuple(p) for p in priors]
    return [{"image": torch.from_numpy(m)[None], "label": torch.from_numpy(m)[None], "prior": p}
            for m, p in zip(masks, priors)]


@pytest.mark.parametrize("batch_size", [2, 3])
def test_every_consumer_gives_each_item_its_own_prior(batch_size):
    from eq_reference import eq3
    from monai.engines import SupervisedEvaluator
    from monai.handlers import from_engine
    from monai.transforms import AsDiscreted, Compose
    from monai_topo.handlers import BettiError, TopologicalCorrectness
    from monai_topo.losses import TopologicalPriorLoss
    from monai_topo.metrics import BettiErrorMetric, TopologicalCorrectnessMetric
    from monai_topo.transforms import TopologicalPostprocessd

    items = _shape_items()[:batch_size]
    loader = DataLoader(Dataset(items), batch_size=batch_size)
    batch = next(iter(loader))

    # metrics on the collated batch
    assert TopologicalCorrectnessMetric(reduction="none")(batch["label"], prior=batch["prior"]).flatten().tolist() == [1.0] * batch_size
    assert BettiErrorMetric(reduction="none")(batch["label"], prior=batch["prior"]).flatten().tolist() == [0.0] * batch_size

    # the loss, against Eq. 3 per item with gudhi
    probs = batch["label"] * 0.8 + 0.1
    loss = TopologicalPriorLoss(reduction="none")(probs, prior=batch["prior"]).flatten()
    expected = torch.stack([eq3(probs[b, 0], items[b]["prior"]) for b in range(batch_size)])
    torch.testing.assert_close(loss, expected.float())

    # handlers and the refinement transform inside a MONAI evaluator (postprocessing after decollation)
    net = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        net.weight.fill_(10.0)
        net.bias.fill_(-5.0)
    refine = TopologicalPostprocessd("image", net, prior_key="prior", iterations=3)
    postprocessing = Compose([refine, AsDiscreted("pred", threshold=0.5)])
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=loader, network=net, postprocessing=postprocessing,
        key_val_metric={"correct": TopologicalCorrectness(prior_key="prior", output_transform=from_engine(["pred", "label"]))},
        additional_metrics={"betti_error": BettiError(prior_key="prior", output_transform=from_engine(["pred", "label"]))},
    )
    with torch.no_grad():
        evaluator.run()
    assert evaluator.state.metrics["correct"] == 1.0
    assert evaluator.state.metrics["betti_error"] == 0.0
    records = [item["pred"].meta["topological_postprocess"] for item in evaluator.state.output]
    assert [r["satisfied_before"] for r in records] == [True] * batch_size
    assert [r["betti_before"] for r in records] == [[tuple(item["prior"])] for item in items]


def test_a_single_prior_where_one_per_item_is_expected_names_the_fix():
    with pytest.raises(ValueError, match=r"single prior \[1, 1\] for 2 items; pass \[\(1, 1\)\] \* 2"):
        parse_batch_priors([1, 1], 2)
