"""Bad and unusual input (issue 13): a clear error where the value was given, or a defined result.

Each table row is ``(callable, expected exception type, words the message must contain)``; the
words name the argument and, where it helps, the value or the fix. The defined results (numpy
arrays with negative strides or big-endian dtypes, ``betti(0)``, label targets) are checked
against independent references: gudhi, scipy labelling, ``torch.nn.functional.one_hot``.
"""

from __future__ import annotations

import tempfile
import warnings

import gudhi
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Engine
from scipy import ndimage

from monai_topo.data import generate_dataset, myocardium_phantom, noisy_ring, placenta_phantom
from monai_topo.handlers import BettiError, TopologicalCorrectness, VariationOfInformation
from monai_topo.losses.matching import PersistenceMatchingLoss, matching_loss_from_diagrams, wasserstein2_squared
from monai_topo.metrics import (
    BettiErrorMetric,
    TopologicalCorrectnessMetric,
    VariationOfInformationMetric,
    compute_betti_error,
    compute_variation_of_information,
)
from monai_topo.ph import batch_persistence, betti_numbers, cubical_persistence, downsampled_persistence
from monai_topo.ph.downsample import pool
from monai_topo.transforms import (
    KSpaceLineCorruption,
    KSpaceLineCorruptiond,
    apply_kspace_line_mask,
    corrupt_kspace_lines,
    kspace_line_mask,
)

RING = torch.zeros(9, 9)
RING[2:7, 2:7] = 0.8
RING[4, 4] = 0.1
RING_DGM = cubical_persistence(RING)
BATCH = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
MASKS = torch.zeros(2, 1, 7, 7)
MASKS[..., 1:6, 1:6] = 1
MASKS[..., 3, 3] = 0
IMAGE = np.random.default_rng(0).random((1, 16, 16)).astype(np.float32)
NAN = float("nan")


def _check(call, error, words):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    missing = [w for w in words if w not in message]
    assert not missing, f"message {message!r} lacks {missing}"


def _cases(table):
    return pytest.mark.parametrize("call,error,words", [row[1:] for row in table], ids=[row[0] for row in table])


PH = [
    ("string image", lambda: cubical_persistence("abc"), TypeError, ["x must be", "str"]),
    ("None image", lambda: cubical_persistence(None), TypeError, ["x must be", "NoneType"]),
    ("NaN pixel", lambda: cubical_persistence(torch.tensor([[0.1, NAN], [0.2, 0.3]])), ValueError, ["x", "NaN"]),
    ("Inf pixel", lambda: cubical_persistence(torch.tensor([[0.1, np.inf], [0.2, 0.3]])), ValueError, ["x", "Inf"]),
    ("logits", lambda: cubical_persistence(torch.rand(4, 4) - 2), ValueError, ["x", "probabilities", "sigmoid"]),
    ("1D", lambda: cubical_persistence(torch.rand(4)), ValueError, ["x", "(H, W)", "(4,)"]),
    ("empty", lambda: cubical_persistence(torch.rand(0, 4)), ValueError, ["x", "empty"]),
    ("int dtype", lambda: cubical_persistence(torch.ones(4, 4, dtype=torch.int64)), TypeError, ["floating-point", "int64", ".float()"]),
    ("bool dtype", lambda: cubical_persistence(torch.ones(4, 4, dtype=torch.bool)), TypeError, ["floating-point", "bool"]),
    ("object array", lambda: cubical_persistence(np.array([[0.1, None]], dtype=object)), TypeError, ["x", "object", "astype"]),
    ("longdouble array", lambda: cubical_persistence(np.ones((2, 2), np.longdouble)), TypeError, ["x", "astype"]),
    ("maxdim string", lambda: cubical_persistence(RING, maxdim="1"), TypeError, ["maxdim", "'1'"]),
    ("maxdim bool", lambda: cubical_persistence(RING, maxdim=True), TypeError, ["maxdim", "True"]),
    ("maxdim too big", lambda: cubical_persistence(RING, maxdim=2), ValueError, ["maxdim", "2D", "2"]),
    ("connectivity None", lambda: cubical_persistence(RING, connectivity=None), ValueError, ["connectivity", "None"]),
    ("connectivity list", lambda: cubical_persistence(RING, connectivity=["full"]), ValueError, ["connectivity"]),
    ("backend list", lambda: cubical_persistence(RING, backend=[]), ValueError, ["backend", "[]"]),
    ("betti(nan)", lambda: RING_DGM.betti(NAN), ValueError, ["threshold", "[0, 1]", "nan"]),
    ("betti(inf)", lambda: RING_DGM.betti(np.inf), ValueError, ["threshold", "inf"]),
    ("betti above 1", lambda: RING_DGM.betti(50), ValueError, ["threshold", "[0, 1]", "50"]),
    ("betti below 0", lambda: RING_DGM.betti(-0.1), ValueError, ["threshold", "-0.1"]),
    ("betti string", lambda: RING_DGM.betti("0.5"), TypeError, ["threshold", "'0.5'"]),
    ("betti None", lambda: RING_DGM.betti(None), TypeError, ["threshold", "None"]),
    ("betti bool", lambda: RING_DGM.betti(True), TypeError, ["threshold", "True"]),
    ("betti vector", lambda: RING_DGM.betti(torch.tensor([0.5, 0.6])), TypeError, ["threshold"]),
    ("in_dim too big", lambda: RING_DGM.in_dim(5), ValueError, ["dim", "0 and 1", "5"]),
    ("in_dim string", lambda: RING_DGM.in_dim("1"), TypeError, ["dim", "'1'"]),
    ("batch of 2D", lambda: batch_persistence(torch.rand(2, 8, 8)), ValueError, ["(B, C, H, W)", "(2, 8, 8)"]),
    ("num_workers string", lambda: batch_persistence(BATCH, num_workers="2"), TypeError, ["num_workers", "'2'"]),
    ("num_workers float", lambda: batch_persistence(BATCH, num_workers=2.5), TypeError, ["num_workers", "2.5"]),
    ("num_workers bool", lambda: batch_persistence(BATCH, num_workers=True), TypeError, ["num_workers", "True"]),
    ("num_workers 0", lambda: batch_persistence(BATCH, num_workers=0), ValueError, ["num_workers", ">= 1", "0"]),
    ("mask string", lambda: betti_numbers("abc"), TypeError, ["mask", "str"]),
    ("mask None", lambda: betti_numbers(None), TypeError, ["mask", "NoneType"]),
    ("mask probabilities", lambda: betti_numbers(np.full((3, 3), 0.4)), ValueError, ["mask", "binary", ">= 0.5"]),
    ("mask NaN", lambda: betti_numbers(np.full((3, 3), np.nan)), ValueError, ["mask", "binary"]),
    ("mask labels 0..2", lambda: betti_numbers(np.array([[0, 2], [1, 0]])), ValueError, ["mask", "binary"]),
    ("mask complex", lambda: betti_numbers(np.eye(3, dtype=complex)), TypeError, ["mask", "complex"]),
    ("mask strings", lambda: betti_numbers(np.array([["0", "1"]])), TypeError, ["mask", "<U1"]),
    ("mask 4D", lambda: betti_numbers(np.ones((1, 1, 4, 4))), ValueError, ["mask", "2D", "(1, 1, 4, 4)"]),
    ("pool factor float", lambda: pool(BATCH, factor=2.0), TypeError, ["factor", "2.0"]),
    ("pool factor 0", lambda: pool(BATCH, factor=0), ValueError, ["factor", ">= 1"]),
    ("pool mode", lambda: pool(BATCH, mode="mean"), ValueError, ["mode", "'mean'", "max"]),
    ("pool bool", lambda: pool(torch.ones(1, 1, 4, 4, dtype=torch.bool)), TypeError, ["floating-point", "bool"]),
    ("downsample NaN", lambda: downsampled_persistence(torch.full((1, 1, 4, 4), NAN)), ValueError, ["NaN"]),
]


@_cases(PH)
def test_ph_bad_input(call, error, words):
    _check(call, error, words)


LOSS_P = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
LABELS = torch.randint(0, 3, (2, 1, 8, 8), generator=torch.Generator().manual_seed(2)).float()
TARGET = (BATCH > 0.5).float()

MATCHING = [
    ("to_onehot_y string", lambda: PersistenceMatchingLoss(to_onehot_y="yes"), TypeError, ["to_onehot_y", "'yes'"]),
    ("to_onehot_y int", lambda: PersistenceMatchingLoss(to_onehot_y=1), TypeError, ["to_onehot_y", "1"]),
    ("patch_size string", lambda: PersistenceMatchingLoss(patch_size="8"), ValueError, ["patch_size", "'8'"]),
    ("reduction avg", lambda: PersistenceMatchingLoss(reduction="avg"), ValueError, ["reduction", "'avg'"]),
    ("num_workers string", lambda: PersistenceMatchingLoss(num_workers="2")(BATCH, TARGET), TypeError, ["num_workers", "'2'"]),
    ("fractional labels", lambda: PersistenceMatchingLoss(to_onehot_y=True)(LOSS_P, LABELS + 0.5), ValueError,
     ["to_onehot_y=True", "0..2", "0.5", "round"]),
    ("label = C", lambda: PersistenceMatchingLoss(to_onehot_y=True)(LOSS_P, LABELS + 1), ValueError, ["0..2", "got 3"]),
    ("label -1", lambda: PersistenceMatchingLoss(to_onehot_y=True)(LOSS_P, LABELS - 1), ValueError, ["0..2", "got -1"]),
    ("label NaN", lambda: PersistenceMatchingLoss(to_onehot_y=True)(LOSS_P, LABELS * NAN), ValueError, ["0..2", "nan"]),
    ("labels not (B, 1)", lambda: PersistenceMatchingLoss(to_onehot_y=True)(LOSS_P, LOSS_P), ValueError,
     ["(B, 1, ...)", "(2, 3, 8, 8)"]),
    ("labels without channel", lambda: PersistenceMatchingLoss(to_onehot_y=True)(LOSS_P, LABELS[:, 0]), ValueError,
     ["(B, 1, ...)", "(2, 8, 8)"]),
    ("target numpy", lambda: PersistenceMatchingLoss()(BATCH, TARGET.numpy()), TypeError, ["target", "ndarray"]),
    ("target None", lambda: PersistenceMatchingLoss()(BATCH, None), TypeError, ["target", "NoneType"]),
    ("target complex", lambda: PersistenceMatchingLoss()(BATCH, TARGET.to(torch.complex64)), TypeError, ["target", "complex"]),
    ("target shape", lambda: PersistenceMatchingLoss()(BATCH, TARGET[:1]), ValueError, ["target shape", "(1, 1, 8, 8)"]),
    ("target NaN", lambda: PersistenceMatchingLoss()(BATCH, TARGET * NAN), ValueError, ["target", "NaN"]),
    ("target 0..2", lambda: PersistenceMatchingLoss()(BATCH, TARGET * 2), ValueError, ["target", "[0, 1]"]),
    ("input NaN", lambda: PersistenceMatchingLoss()(BATCH * NAN, TARGET), ValueError, ["input", "NaN"]),
    ("input int", lambda: PersistenceMatchingLoss()(TARGET.long(), TARGET), TypeError, ["input", "floating-point"]),
    ("points list", lambda: wasserstein2_squared([[1.0, 0.0]], torch.zeros(1, 2)), TypeError, ["prediction", "list"]),
    ("points (n, 3)", lambda: wasserstein2_squared(torch.rand(3, 3), torch.rand(2, 2)), ValueError, ["prediction", "(n, 2)", "(3, 3)"]),
    ("points 1D", lambda: wasserstein2_squared(torch.zeros(2, 2), torch.tensor([1.0, 0.0])), ValueError, ["target", "(n, 2)"]),
    ("points NaN", lambda: wasserstein2_squared(torch.tensor([[NAN, 0.0]]), torch.zeros(1, 2)), ValueError, ["prediction", "NaN"]),
    ("diagram None", lambda: matching_loss_from_diagrams(None, RING_DGM), TypeError, ["prediction", "PersistenceDiagram", "NoneType"]),
    ("diagram tensor", lambda: matching_loss_from_diagrams(RING_DGM, torch.rand(3, 2)), TypeError, ["target", "PersistenceDiagram"]),
]


@_cases(MATCHING)
def test_matching_loss_bad_input(call, error, words):
    _check(call, error, words)


METRICS = []
for _name, _cls in (("BettiError", BettiErrorMetric), ("TopologicalCorrectness", TopologicalCorrectnessMetric)):
    METRICS += [
        (f"{_name} reduction avg", lambda c=_cls: c(reduction="avg"), ValueError, ["reduction", "'avg'", "mean_batch"]),
        (f"{_name} reduction None", lambda c=_cls: c(reduction=None), ValueError, ["reduction", "None"]),
        (f"{_name} aggregate before update", lambda c=_cls: c().aggregate(), ValueError, ["nothing to aggregate", "first"]),
        (f"{_name} aggregate(avg)", lambda c=_cls: c().aggregate(reduction="avg"), ValueError, ["reduction", "'avg'"]),
        (f"{_name} include_background string", lambda c=_cls: c(include_background="no"), TypeError, ["include_background", "'no'"]),
        (f"{_name} get_not_nans string", lambda c=_cls: c(get_not_nans="yes"), TypeError, ["get_not_nans"]),
        (f"{_name} ignore_empty string", lambda c=_cls: c(ignore_empty="x"), TypeError, ["ignore_empty", "'x'"]),
        (f"{_name} prior string number", lambda c=_cls: c(prior=(1, "1")), TypeError, ["prior[1]", "'1'"]),
        (f"{_name} prior NaN", lambda c=_cls: c(prior=(1, NAN)), ValueError, ["prior[1]", "nan"]),
        (f"{_name} priors of wrong length", lambda c=_cls: c()(MASKS, prior=[(1, 1)] * 3), ValueError, ["3 per-item priors", "2 items"]),
        (f"{_name} y a list, y_pred a tensor", lambda c=_cls: c()(MASKS, [MASKS[0]]), ValueError, ["both be batch tensors"]),
        (f"{_name} lists of unequal length", lambda c=_cls: c()([MASKS[0], MASKS[1]], [MASKS[0]]), ValueError, ["as many items", "2 and 1"]),
        (f"{_name} list holding None", lambda c=_cls: c()([MASKS[0], None], [MASKS[0], MASKS[1]]), TypeError, ["y_pred[1]", "NoneType"]),
        (f"{_name} empty list", lambda c=_cls: c()([], []), ValueError, ["y_pred", "empty list"]),
    ]
METRICS += [
    ("compute string", lambda: compute_betti_error("abc", MASKS), TypeError, ["y_pred", "str"]),
    ("compute None", lambda: compute_betti_error(None, MASKS), TypeError, ["y_pred", "NoneType"]),
    ("compute probabilities", lambda: compute_betti_error(torch.rand(1, 1, 4, 4), MASKS[:1, :, :4, :4]), ValueError,
     ["y_pred", "binarised", "AsDiscrete"]),
    ("compute NaN", lambda: compute_betti_error(MASKS * NAN, MASKS), ValueError, ["y_pred", "binarised"]),
    ("compute shapes", lambda: compute_betti_error(MASKS, MASKS[:1]), ValueError, ["same shape", "(2, 1, 7, 7)", "(1, 1, 7, 7)"]),
    ("compute 3 dims", lambda: compute_betti_error(MASKS[0], MASKS[0]), ValueError, ["(B, C, H, W)", "(1, 7, 7)"]),
    ("compute complex", lambda: compute_betti_error(MASKS.to(torch.complex64), MASKS), TypeError, ["y_pred", "complex"]),
    ("compute include_background None", lambda: compute_betti_error(MASKS, MASKS, include_background=None), TypeError,
     ["include_background", "None"]),
    ("compute ignore_empty string", lambda: compute_betti_error(MASKS, MASKS, ignore_empty="yes"), TypeError, ["ignore_empty"]),
    ("compute prior fraction", lambda: compute_betti_error(MASKS, prior=[(1, 0.5), (1, 1)]), ValueError, ["prior[0][1]", "0.5"]),
    ("homology_dim string", lambda: BettiErrorMetric(homology_dim="1"), ValueError, ["homology_dim", "'1'"]),
    ("VI reduction avg", lambda: VariationOfInformationMetric(reduction="avg"), ValueError, ["reduction", "'avg'"]),
    ("VI aggregate before update", lambda: VariationOfInformationMetric().aggregate(), ValueError, ["nothing to aggregate"]),
    ("VI probabilities", lambda: compute_variation_of_information(torch.rand(1, 1, 4, 4), MASKS[:1, :, :4, :4]), ValueError,
     ["y_pred", "integer labels", "argmax"]),
    ("VI without y", lambda: compute_variation_of_information(MASKS, None), ValueError, ["y", "required"]),
    ("VI string", lambda: compute_variation_of_information("x", MASKS), TypeError, ["y_pred", "str"]),
]


@_cases(METRICS)
def test_metrics_bad_input(call, error, words):
    _check(call, error, words)


def _run(handler, data, step=lambda engine, batch: (batch, None)):
    engine = Engine(step)
    handler.attach(engine, "m")
    return engine.run(data).metrics["m"]


HANDLERS = [
    ("BettiError reduction avg", lambda: BettiError(reduction="avg"), ValueError, ["reduction", "'avg'"]),
    ("TopologicalCorrectness reduction avg", lambda: TopologicalCorrectness(reduction="avg"), ValueError, ["reduction"]),
    ("VariationOfInformation reduction avg", lambda: VariationOfInformation(reduction="avg"), ValueError, ["reduction"]),
    ("BettiError homology_dim string", lambda: BettiError(homology_dim="0"), ValueError, ["homology_dim"]),
    # a bare (2, 1, 7, 7) tensor would otherwise be unpacked as y_pred = item 0, y = item 1
    ("output is a tensor", lambda: _run(BettiError(prior=(1, 1)), [MASKS], lambda e, b: b), ValueError,
     ["(y_pred, y) pair", "Tensor", "output_transform"]),
    ("output of 3 values", lambda: _run(BettiError(prior=(1, 1)), [MASKS], lambda e, b: (b, None, None)), ValueError,
     ["(y_pred, y) pair", "3 values"]),
    ("prior_key missing", lambda: _run(BettiError(prior_key="prior"), [MASKS]), ValueError, ["prior_key='prior'", "not found"]),
]


@_cases(HANDLERS)
def test_handlers_bad_input(call, error, words):
    _check(call, error, words)


ONES = np.ones((16, 16), bool)
KSPACE = [
    ("spatial_shape int", lambda: kspace_line_mask(16, 2), TypeError, ["spatial_shape", "sequence"]),
    ("spatial_shape string", lambda: kspace_line_mask("16", 2), TypeError, ["spatial_shape", "'16'"]),
    ("spatial_shape 3D", lambda: kspace_line_mask((16, 16, 16), 2), ValueError, ["spatial_shape", "2 integers"]),
    ("spatial_shape fraction", lambda: kspace_line_mask((16.5, 16), 2), TypeError, ["spatial_shape[0]", "16.5"]),
    ("spatial_shape negative", lambda: kspace_line_mask((-2, 4), 0), ValueError, ["spatial_shape[0]", ">= 1"]),
    ("m_rows string", lambda: kspace_line_mask((16, 16), "2"), TypeError, ["m_rows", "'2'"]),
    ("m_rows None", lambda: kspace_line_mask((16, 16), None), TypeError, ["m_rows", "None"]),
    ("m_rows too many", lambda: kspace_line_mask((16, 16), 100), ValueError, ["m_rows", "between 0 and 8", "keep_centre"]),
    ("m_cols None", lambda: kspace_line_mask((16, 16), 2, None), TypeError, ["m_cols", "None"]),
    ("keep_centre string", lambda: kspace_line_mask((16, 16), 2, keep_centre="8"), TypeError, ["keep_centre", "'8'"]),
    ("rng string", lambda: kspace_line_mask((16, 16), 2, rng="a"), TypeError, ["rng", "'a'"]),
    ("rng negative", lambda: kspace_line_mask((16, 16), 2, rng=-1), ValueError, ["rng", ">= 0"]),
    ("rng torch", lambda: kspace_line_mask((16, 16), 2, rng=torch.Generator()), TypeError, ["rng", "Generator"]),
    ("image string", lambda: apply_kspace_line_mask("x", ONES), TypeError, ["image", "str"]),
    ("image NaN", lambda: corrupt_kspace_lines(IMAGE * np.nan, 2), ValueError, ["image", "NaN"]),
    ("image 2D", lambda: corrupt_kspace_lines(IMAGE[0], 2), ValueError, ["image", "channel-first", "(16, 16)"]),
    ("image empty", lambda: apply_kspace_line_mask(np.ones((0, 16, 16)), ONES), ValueError, ["image", "empty"]),
    ("image complex", lambda: apply_kspace_line_mask(IMAGE.astype(complex), ONES), TypeError, ["image", "complex"]),
    ("soft mask", lambda: apply_kspace_line_mask(IMAGE, np.full((16, 16), 0.5)), ValueError, ["mask", "boolean", "0 and 1"]),
    ("mask None", lambda: apply_kspace_line_mask(IMAGE, None), TypeError, ["mask", "NoneType"]),
    ("mask shape", lambda: apply_kspace_line_mask(IMAGE, np.ones((8, 8), bool)), ValueError, ["mask shape", "(8, 8)"]),
    ("transform m_rows string", lambda: KSpaceLineCorruption(m_rows="2"), TypeError, ["m_rows", "'2'"]),
    ("transform keep_centre -1", lambda: KSpaceLineCorruption(m_rows=2, keep_centre=-1), ValueError, ["keep_centre", ">= 0"]),
    ("transform prob 2", lambda: KSpaceLineCorruption(m_rows=2, prob=2), ValueError, ["prob", "[0, 1]", "2.0"]),
    ("transform prob string", lambda: KSpaceLineCorruption(m_rows=2, prob="0.5"), TypeError, ["prob", "'0.5'"]),
    ("transform prob NaN", lambda: KSpaceLineCorruption(m_rows=2, prob=NAN), ValueError, ["prob", "nan"]),
    ("transform 2D image", lambda: KSpaceLineCorruption(m_rows=2)(IMAGE[0]), ValueError, ["img", "channel-first"]),
    ("dict transform prob -1", lambda: KSpaceLineCorruptiond("image", m_rows=2, prob=-1), ValueError, ["prob", "-1"]),
    ("dict transform m_rows string", lambda: KSpaceLineCorruptiond("image", m_rows="2"), TypeError, ["m_rows"]),
]


@_cases(KSPACE)
def test_kspace_bad_input(call, error, words):
    _check(call, error, words)


def _empty_counts(**kwargs):
    return generate_dataset("myocardium", tempfile.mkdtemp(), n_train=0, n_unlabelled=0, n_val=0, n_test=0, **kwargs)


DATA = [
    ("size string", lambda: myocardium_phantom("64"), TypeError, ["size", "'64'"]),
    ("size small", lambda: myocardium_phantom(16), ValueError, ["size", ">= 32", "16"]),
    ("noise string", lambda: myocardium_phantom(64, noise="0.1"), TypeError, ["noise", "'0.1'"]),
    ("noise None", lambda: myocardium_phantom(64, noise=None), TypeError, ["noise", "None"]),
    ("noise inf", lambda: myocardium_phantom(64, noise=np.inf), ValueError, ["noise", "inf"]),
    ("apical string", lambda: myocardium_phantom(64, apical="no"), TypeError, ["apical", "'no'"]),
    ("rng negative", lambda: myocardium_phantom(64, rng=-1), ValueError, ["rng", ">= 0"]),
    ("placenta shape int", lambda: placenta_phantom(24), TypeError, ["shape", "sequence of 3"]),
    ("placenta shape 2D", lambda: placenta_phantom((24, 24)), ValueError, ["shape", "3 integers"]),
    ("placenta shape fraction", lambda: placenta_phantom((24.5, 24, 24)), TypeError, ["shape[0]", "24.5"]),
    ("placenta shape small", lambda: placenta_phantom((10, 32, 32)), ValueError, ["shape[0]", ">= 24"]),
    ("placenta roughness string", lambda: placenta_phantom(roughness="0.1"), TypeError, ["roughness", "'0.1'"]),
    ("placenta speckle None", lambda: placenta_phantom(speckle=None), TypeError, ["speckle", "None"]),
    ("placenta distractors float", lambda: placenta_phantom(distractors=2.0), TypeError, ["distractors", "2.0"]),
    ("ring size string", lambda: noisy_ring("32"), TypeError, ["size", "'32'"]),
    ("ring size 0", lambda: noisy_ring(0), ValueError, ["size", "0"]),
    ("ring thickness 0", lambda: noisy_ring(32, thickness=0), ValueError, ["thickness", "> 0"]),
    ("ring noise NaN", lambda: noisy_ring(32, noise=NAN), ValueError, ["noise", "nan"]),
    ("ring seed string", lambda: noisy_ring(32, seed="a"), TypeError, ["seed", "'a'"]),
    ("dataset kind", lambda: generate_dataset("heart", tempfile.mkdtemp()), ValueError, ["kind", "'heart'", "myocardium"]),
    ("dataset n_train string", lambda: generate_dataset("myocardium", tempfile.mkdtemp(), n_train="2"), TypeError,
     ["n_train", "'2'"]),
    ("dataset seed None", lambda: _empty_counts(seed=None), TypeError, ["seed", "None"]),
    ("dataset seed negative", lambda: _empty_counts(seed=-1), ValueError, ["seed", ">= 0"]),
    ("dataset shape small", lambda: _empty_counts(shape=(16, 16)), ValueError, ["shape[0]", ">= 32"]),
    ("dataset shape fraction", lambda: _empty_counts(shape=(64.5, 64.5)), TypeError, ["shape[0]", "64.5"]),
    ("dataset shape not square", lambda: _empty_counts(shape=(64, 48)), ValueError, ["shape", "square"]),
    ("dataset spacing number", lambda: _empty_counts(spacing=1.0), ValueError, ["spacing", "2 positive values"]),
    ("dataset spacing NaN", lambda: _empty_counts(spacing=(NAN, 1)), ValueError, ["spacing[0]", "nan"]),
    ("dataset spacing 0", lambda: _empty_counts(spacing=(0, 1)), ValueError, ["spacing", "positive"]),
    ("dataset apical string", lambda: _empty_counts(apical_fraction="0.5"), TypeError, ["apical_fraction", "'0.5'"]),
    ("dataset m_lines string", lambda: _empty_counts(m_lines="4"), TypeError, ["m_lines", "'4'"]),
    ("dataset folder None", lambda: generate_dataset("myocardium", None), TypeError, ["dataset_dir", "NoneType"]),
    ("dataset folder is a file", lambda: generate_dataset("myocardium", __file__), ValueError, ["dataset_dir", "is a file"]),
]


@_cases(DATA)
def test_data_bad_input(call, error, words):
    _check(call, error, words)


# ---- defined results, each against an independent reference ---------------------------------


def _gudhi_bars(x: np.ndarray) -> list:
    """``(dim, birth, death)`` of the super-level filtration of ``x`` by gudhi (essential: death 0)."""
    complex_ = gudhi.CubicalComplex(top_dimensional_cells=-np.ascontiguousarray(x, dtype=np.float64))
    bars = [(d, -b, 0.0 if np.isinf(e) else -e) for d, (b, e) in complex_.persistence(homology_coeff_field=2)]
    return sorted((d, round(b, 6), round(e, 6)) for d, b, e in bars if b != e)


def _our_bars(dgm) -> list:
    return sorted((int(d), round(float(b), 6), round(float(e), 6)) for d, b, e in dgm.to_numpy())


@pytest.mark.parametrize(
    "make",
    [lambda a: np.flip(a, 0), lambda a: a[::-1, ::-2], lambda a: a.astype(">f4"), lambda a: np.flip(a.astype(">f8"), 1)],
    ids=["flip", "negative steps", "big-endian f4", "flipped big-endian f8"],
)
def test_numpy_layouts_torch_refuses_give_gudhis_diagram(make):
    x = make(np.random.default_rng(3).random((9, 12)).astype(np.float32))
    before = x.copy()
    assert _our_bars(cubical_persistence(x)) == _gudhi_bars(x)
    assert _our_bars(cubical_persistence(x, backend="cripser")) == _gudhi_bars(x)
    batch = batch_persistence(x[None, None])
    assert _our_bars(batch[0][0]) == _gudhi_bars(x)
    assert x.dtype == before.dtype and np.array_equal(x, before)  # the caller's array is left as it was


def _scipy_betti_2d(mask: np.ndarray) -> tuple[int, int]:
    """β0 with 8-connected foreground, β1 as the bounded 4-connected background regions."""
    b0 = ndimage.label(mask, structure=np.ones((3, 3)))[1]
    b1 = ndimage.label(np.pad(~mask, 1, constant_values=True))[1] - 1
    return b0, b1


@pytest.mark.parametrize("threshold", [0, 0.05, 0.5, 0.8, 1])
def test_betti_at_every_threshold_in_range_is_that_of_the_super_level_set(threshold):
    x = np.random.default_rng(4).random((10, 10)).astype(np.float32)
    x[2:8, 2:8] = 0.9
    x[4:6, 4:6] = 0.0
    x[0, 0] = 1.0
    assert cubical_persistence(torch.from_numpy(x)).betti(threshold) == _scipy_betti_2d(x >= threshold)


def test_betti_threshold_zero_counts_the_whole_image():
    assert cubical_persistence(torch.zeros(4, 5)).betti(0) == (1, 0)
    assert cubical_persistence(torch.rand(3, 4, 5)).betti(0) == (1, 0, 0)


def test_betti_threshold_as_zero_dim_tensor_or_numpy_scalar():
    assert RING_DGM.betti(torch.tensor(0.5)) == RING_DGM.betti(np.float32(0.5)) == _scipy_betti_2d(RING.numpy() >= 0.5)


def test_masks_in_unusual_layouts_and_dtypes():
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True
    mask[3, 3] = False
    mask[0, 6] = True
    expected = _scipy_betti_2d(mask)
    assert betti_numbers(torch.from_numpy(mask).to(torch.bfloat16)) == expected
    assert betti_numbers(np.flip(mask.astype(">i4"), 1)) == _scipy_betti_2d(np.flip(mask, 1))
    assert betti_numbers(mask.astype(np.float16).tolist()) == expected


def test_metrics_accept_numpy_in_any_layout():
    flipped = np.flip(MASKS.numpy(), 3).astype(">f4")  # negative strides and big-endian at once
    reference = np.array([_scipy_betti_2d(m[0].astype(bool)) for m in np.flip(MASKS.numpy(), 3)], float)
    errors = compute_betti_error(flipped, prior=[(0, 0), (0, 0)])
    np.testing.assert_array_equal(errors[:, 0, :2].numpy(), reference)
    metric = BettiErrorMetric(reduction="none")
    np.testing.assert_array_equal(metric(flipped, MASKS.numpy().astype(">i2")).numpy(), [[0.0], [0.0]])
    vi = compute_variation_of_information(flipped, torch.from_numpy(np.flip(MASKS.numpy(), 3).copy()).bfloat16())
    np.testing.assert_array_equal(vi.numpy(), [[0.0], [0.0]])


def test_integer_labels_with_to_onehot_y_match_torch_one_hot():
    loss = PersistenceMatchingLoss(to_onehot_y=True)
    reference = F.one_hot(LABELS[:, 0].long(), 3).permute(0, 3, 1, 2).float()
    expected = PersistenceMatchingLoss()(LOSS_P, reference)
    for labels in (LABELS, LABELS.long(), LABELS.to(torch.uint8)):
        torch.testing.assert_close(loss(LOSS_P, labels), expected)


def test_to_onehot_y_with_one_channel_is_ignored_with_monais_warning():
    with pytest.warns(UserWarning, match="to_onehot_y=True` ignored"):
        got = PersistenceMatchingLoss(to_onehot_y=True)(BATCH, TARGET)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(got, PersistenceMatchingLoss()(BATCH, TARGET))


def test_aggregate_after_reset_needs_new_batches():
    metric = BettiErrorMetric(prior=(1, 1))
    metric(MASKS)
    assert metric.aggregate().item() == 0
    metric.reset()
    _check(metric.aggregate, ValueError, ["nothing to aggregate"])
