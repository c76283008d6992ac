"""Phantoms and the generated datasets: label topology, files, datalist, idempotent generation."""

import json
import os

import numpy as np
import pytest
import torch
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImage
from scipy import ndimage

from monai_topo.data import (
    MYOCARDIUM_PRIORS,
    PLACENTA_PRIOR,
    ensure_dataset,
    generate_dataset,
    myocardium_phantom,
    noisy_ring,
    placenta_phantom,
)
from monai_topo.ph import CONNECTIVITIES, betti_numbers


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
@pytest.mark.parametrize("size", [48, 64, 96])
def test_myocardium_labels_are_rings_and_apical_discs(connectivity, size):
    for seed in range(25):
        image, label = myocardium_phantom(size, rng=seed)
        assert image.dtype == np.float32 and image.shape == (size, size)
        assert image.min() == 0 and image.max() == 1
        assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1}
        assert betti_numbers(label, connectivity) == MYOCARDIUM_PRIORS["ring"] == (1, 1)
        assert betti_numbers(myocardium_phantom(size, rng=seed, apical=True)[1], connectivity) == (1, 0)


def test_myocardium_looks_like_cine_mri():
    """Bright blood pool inside a dark myocardium: the pool (the ring's hole) is brighter than the wall."""
    for seed in range(10):
        image, label = myocardium_phantom(64, rng=seed, noise=0.0)
        pool = ndimage.binary_fill_holes(label) & ~label.astype(bool)
        assert image[pool].mean() > image[label == 1].mean() + 0.3


@pytest.mark.parametrize("connectivity", CONNECTIVITIES)
def test_placenta_labels_are_solid_blobs(connectivity):
    for seed in range(12):
        image, label = placenta_phantom((24, 32, 32), rng=seed)
        assert image.dtype == np.float32 and image.shape == (24, 32, 32)
        assert image.min() == 0 and image.max() == 1
        assert betti_numbers(label, connectivity) == PLACENTA_PRIOR == (1, 0, 0)
        assert 0.03 < label.mean() < 0.4


def test_placenta_is_brighter_than_the_fluid_and_has_distractors():
    image, label = placenta_phantom((32, 48, 48), rng=0, speckle=0.0)
    outside = ~ndimage.binary_dilation(label, iterations=2)
    assert image[label == 1].mean() > np.median(image[outside]) + 0.2
    # bright distractors outside the placenta, brighter than the placenta itself
    assert (image[outside] > image[label == 1].mean() + 0.1).sum() > 20


def test_phantoms_are_seeded():
    a, b = myocardium_phantom(64, rng=3), myocardium_phantom(64, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], myocardium_phantom(64, rng=4)[0])
    np.testing.assert_array_equal(placenta_phantom((24, 24, 24), rng=1)[0], placenta_phantom((24, 24, 24), rng=1)[0])


@pytest.mark.parametrize("call,name", [
    (lambda: myocardium_phantom(16), "size"),
    (lambda: myocardium_phantom(64, noise=-1), "noise"),
    (lambda: myocardium_phantom(64, rng="x"), "rng"),
    (lambda: placenta_phantom((10, 32, 32)), "shape"),
    (lambda: placenta_phantom((32, 32)), "shape"),
    (lambda: placenta_phantom(roughness=0.9), "roughness"),
    (lambda: placenta_phantom(speckle=2), "speckle"),
    (lambda: placenta_phantom(distractors=-1), "distractors"),
])
def test_bad_phantom_parameters_are_named(call, name):
    with pytest.raises((ValueError, TypeError), match=name):
        call()


def test_noisy_ring_demo_still_works():
    ring = noisy_ring(32, seed=0)
    assert ring.shape == (32, 32) and ring.dtype == np.float32 and 0 <= ring.min() <= ring.max() <= 1


@pytest.fixture(scope="module")
def myocardium_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("myocardium")
    datalist = generate_dataset("myocardium", folder, n_train=3, n_unlabelled=2, n_val=1, n_test=2, m_lines=12,
                                seed=5, apical_fraction=0.5)
    return folder, datalist


def test_datalist_loads_with_monai(myocardium_dataset):
    folder, datalist = myocardium_dataset
    assert datalist == str(folder / "datalist.json")
    counts = {"training": 3, "unlabelled": 2, "validation": 1, "test": 2}
    for split, count in counts.items():
        items = load_decathlon_datalist(datalist, is_segmentation=True, data_list_key=split)
        assert len(items) == count
        for item in items:
            assert os.path.isfile(item["image"])
            assert ("label" in item) == (split != "unlabelled")
            assert tuple(item["prior"]) in MYOCARDIUM_PRIORS.values()
    meta = json.loads((folder / "datalist.json").read_text())
    assert meta["kind"] == "myocardium" and meta["m_lines"] == 12 and meta["numTraining"] == 3


def test_files_read_back_with_affine_and_topology(myocardium_dataset):
    folder, datalist = myocardium_dataset
    load = LoadImage(image_only=True, ensure_channel_first=True)
    expected_affine = torch.diag(torch.tensor([1.5, 1.5, 1.0, 1.0], dtype=torch.float64))
    for item in load_decathlon_datalist(datalist, data_list_key="training") + load_decathlon_datalist(
            datalist, data_list_key="test"):
        image, label = load(item["image"]), load(item["label"])
        assert image.shape == label.shape == (1, 64, 64)
        torch.testing.assert_close(image.affine, expected_affine)
        torch.testing.assert_close(label.affine, expected_affine)
        assert float(image.min()) == 0 and abs(float(image.max()) - 1) < 1e-6
        assert betti_numbers(label[0].numpy().astype(bool)) == tuple(item["prior"])


def test_cardiac_images_are_kspace_corrupted(tmp_path):
    """With m_lines=0 the written image is the phantom itself; with m_lines > 0 it is not."""
    load = LoadImage(image_only=True)
    clean = generate_dataset("myocardium", tmp_path / "clean", 1, 0, 0, 0, m_lines=0, seed=1)
    corrupted = generate_dataset("myocardium", tmp_path / "corrupted", 1, 0, 0, 0, m_lines=20, seed=1)
    a = load(load_decathlon_datalist(clean)[0]["image"]).numpy()
    b = load(load_decathlon_datalist(corrupted)[0]["image"]).numpy()
    phantom = myocardium_phantom(64, rng=np.random.default_rng([1, 0, 0]))[0]
    np.testing.assert_allclose(a, phantom, atol=1e-5)
    assert np.abs(a - b).mean() > 0.01


def test_placenta_dataset(tmp_path):
    datalist = generate_dataset("placenta", tmp_path, n_train=1, n_unlabelled=1, n_val=0, n_test=1,
                                shape=(24, 32, 32), spacing=(2.0, 1.0, 1.0))
    item = load_decathlon_datalist(datalist, data_list_key="test")[0]
    label = LoadImage(image_only=True)(item["label"])
    assert label.shape == (24, 32, 32)
    torch.testing.assert_close(label.affine, torch.diag(torch.tensor([2.0, 1.0, 1.0, 1.0], dtype=torch.float64)))
    assert betti_numbers(label.numpy().astype(bool)) == tuple(item["prior"]) == (1, 0, 0)
    assert load_decathlon_datalist(datalist, data_list_key="validation") == []


def test_splits_do_not_depend_on_other_counts(tmp_path):
    load = LoadImage(image_only=True)
    small = generate_dataset("myocardium", tmp_path / "a", 1, 0, 0, 1, seed=2)
    large = generate_dataset("myocardium", tmp_path / "b", 4, 3, 2, 1, seed=2)
    first, second = (load(load_decathlon_datalist(d, data_list_key="test")[0]["image"]) for d in (small, large))
    torch.testing.assert_close(first, second)


def test_ensure_dataset_does_not_regenerate(tmp_path):
    datalist = ensure_dataset(tmp_path, "myocardium", generate_synthetic=True, n_train=2, n_unlabelled=0, n_val=0, n_test=0)
    image_file = tmp_path / "images" / "training_000.nii.gz"
    before = image_file.read_bytes()
    mtime = image_file.stat().st_mtime_ns
    again = ensure_dataset(tmp_path, "myocardium", n_train=5, seed=9)
    assert again == datalist
    assert image_file.read_bytes() == before and image_file.stat().st_mtime_ns == mtime
    assert not (tmp_path / "images" / "training_002.nii.gz").exists()
    # a folder with someone else's datalist (real data) is left alone, whatever the kind
    real = tmp_path / "real"
    real.mkdir()
    (real / "datalist.json").write_text('{"training": []}')
    assert ensure_dataset(real, "placenta") == str(real / "datalist.json")
    assert sorted(os.listdir(real)) == ["datalist.json"]


def test_no_temporary_files_left(myocardium_dataset):
    folder, _ = myocardium_dataset
    names = [n for _, _, files in os.walk(folder) for n in files]
    assert not [n for n in names if n.startswith(".")]


@pytest.mark.parametrize("kwargs,name", [
    ({"kind": "lungs"}, "kind"),
    ({"kind": "myocardium", "n_train": -1}, "n_train"),
    ({"kind": "myocardium", "shape": (64, 48)}, "shape"),
    ({"kind": "myocardium", "m_lines": 60}, "m_lines"),
    ({"kind": "myocardium", "m_lines": -2}, "m_lines"),
    ({"kind": "placenta", "m_lines": 4}, "m_lines"),
    ({"kind": "placenta", "apical_fraction": 0.2}, "apical_fraction"),
    ({"kind": "myocardium", "spacing": (1.0,)}, "spacing"),
])
def test_bad_dataset_parameters_are_named(tmp_path, kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        generate_dataset(dataset_dir=tmp_path, n_unlabelled=0, n_val=0, n_test=0, **kwargs)
