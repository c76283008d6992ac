"""Ignite handlers of the topology metrics inside MONAI/ignite evaluation loops."""

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from monai.handlers import from_engine
from shapes import KNOWN_SHAPES

from monai_topo.handlers import BettiError, TopologicalCorrectness, VariationOfInformation
from monai_topo.metrics import compute_betti_error, compute_topological_correctness, compute_variation_of_information

PRED_NAMES = ["ring", "disc", "two_rings", "figure_eight", "ring"]
TRUTH_NAMES = ["ring", "ring", "ring", "figure_eight", "disc"]
SIZE = (40, 45)


def _mask(name):
    mask = np.zeros((1, *SIZE), np.float32)
    shape = KNOWN_SHAPES[name][0]()
    mask[(0, *[slice(0, n) for n in shape.shape])] = shape
    return mask


def _data(with_label=True):
    """Items whose image is already the binarised prediction, so an identity network 'segments' them."""
    items = []
    for pred, truth in zip(PRED_NAMES, TRUTH_NAMES):
        item = {"image": _mask(pred), "prior": np.array(KNOWN_SHAPES[truth][1])}
        if with_label:
            item["label"] = _mask(truth)
        items.append(item)
    return items


def _stacked(names):
    return torch.from_numpy(np.stack([_mask(n) for n in names]))


def _evaluate(metrics, with_label=True):
    """Run an evaluator with the first metric as key metric (MONAI registers the others only beside one)."""
    names = list(metrics)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(_data(with_label), batch_size=2),
        network=torch.nn.Identity(),
        key_val_metric={names[0]: metrics[names[0]]},
        additional_metrics={name: metrics[name] for name in names[1:]},
    )
    evaluator.run()
    return evaluator.state


def test_handlers_with_ground_truth_in_supervised_evaluator():
    pred, truth = _stacked(PRED_NAMES), _stacked(TRUTH_NAMES)
    to_pair = from_engine(["pred", "label"])
    state = _evaluate(
        {
            "betti_error": BettiError(output_transform=to_pair),
            "betti_error_b1": BettiError(homology_dim=1, output_transform=to_pair),
            "correct": TopologicalCorrectness(output_transform=to_pair),
            "vi": VariationOfInformation(output_transform=to_pair),
        }
    )
    errors = compute_betti_error(pred, truth)
    assert state.metrics["betti_error"] == pytest.approx(errors[..., -1].mean().item())
    assert state.metrics["betti_error_b1"] == pytest.approx(errors[..., 1].mean().item())
    assert state.metrics["correct"] == pytest.approx(compute_topological_correctness(pred, truth).mean().item())
    assert state.metrics["correct"] == pytest.approx(2 / 5)
    assert state.metrics["vi"] == pytest.approx(compute_variation_of_information(pred, truth).mean().item())
    assert state.metric_details["betti_error"].shape == (5, 1)


def test_fixed_prior_needs_no_labels_and_serves_as_key_metric():
    to_pair = from_engine(["pred", "label"])
    state = _evaluate(
        {
            "correct": TopologicalCorrectness(prior=(1, 1), output_transform=to_pair),
            "betti_error": BettiError(prior=(1, 1), output_transform=to_pair),
        },
        with_label=False,
    )
    pred = _stacked(PRED_NAMES)
    assert state.metrics["correct"] == pytest.approx(2 / 5)  # the two rings
    assert state.best_metric == pytest.approx(2 / 5)
    expected_error = compute_betti_error(pred, prior=[(1, 1)] * 5)[..., -1].mean().item()
    assert state.metrics["betti_error"] == pytest.approx(expected_error)


def test_per_item_priors_from_the_batch():
    pred, truth = _stacked(PRED_NAMES), _stacked(TRUTH_NAMES)
    to_pair = from_engine(["pred", "label"])
    state = _evaluate(
        {
            "by_prior": TopologicalCorrectness(prior_key="prior", output_transform=to_pair),
            "by_truth": TopologicalCorrectness(output_transform=to_pair),
        }
    )
    # The priors are the truths' Betti numbers, so both ways agree.
    assert state.metrics["by_prior"] == state.metrics["by_truth"]
    assert state.metrics["by_prior"] == pytest.approx(compute_topological_correctness(pred, truth).mean().item())


def test_per_item_priors_from_a_collated_batch_in_a_plain_ignite_engine():
    data = [{"pred": _stacked(PRED_NAMES[:3]), "prior": torch.tensor([[1, 0], [1, 0], [(np.nan)] * 2])}]
    engine = Engine(lambda engine, batch: (batch["pred"], None))
    BettiError(prior_key="prior", reduction="none").attach(engine, "betti_error")
    values = engine.run(data).metrics["betti_error"]
    np.testing.assert_array_equal(values, [1, 0, np.nan])  # ring vs disc prior, disc, unknown


def test_missing_prior_key_raises():
    engine = Engine(lambda engine, batch: (batch["pred"], None))
    TopologicalCorrectness(prior_key="prior").attach(engine, "correct")
    with pytest.raises(ValueError, match="prior_key='prior' not found"):
        engine.run([{"pred": _stacked(["ring"])}])
