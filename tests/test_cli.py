"""monai-topo infer / betti: batch inference over NIfTI and SimpleITK files, resuming, atomic outputs,
reports checked against direct computations, two-process torchrun, and the per-label Betti table."""

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from monai_topo.cli import main
from monai_topo.inference import batch, resolve_bundle
from monai_topo.inference.bundle import BUNDLES_ENV
from monai_topo.ph import betti_numbers
from shapes import KNOWN_SHAPES, disc, ring

REPO = Path(__file__).resolve().parents[1]
PREPROCESSING = {
    "_target_": "Compose",
    "transforms": [
        {"_target_": "LoadImaged", "keys": "image"},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "ScaleIntensityd", "keys": "image"},
        # Invertible and geometry-changing for the flipped affines below: outputs must be mapped back.
        {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS", "labels": None},
    ],
}


def make_bundle(root: Path, network: torch.nn.Module, network_def: dict, **overrides) -> Path:
    """A bundle following the inference contract of monai-topo infer, with ``network``'s weights."""
    config = {
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        "spatial_dims": 2,
        "prior": [1, 1],
        "postprocess": True,
        "slice_by_slice": True,
        "refine_args": {"iterations": 3, "lr": 0.01, "lambda_topo": 0.01},
        "network_def": network_def,
        "network": "$@network_def.to(@device)",
        "ckpt_path": "$@bundle_root + '/models/model.pt'",
        "inferer": {"_target_": "SimpleInferer"},
        "preprocessing": PREPROCESSING,
        **overrides,
    }
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "configs" / "inference.json").write_text(json.dumps(config, indent=1))
    torch.save(network.state_dict(), root / "models" / "model.pt")
    return root


def make_threshold_bundle(root: Path, **overrides) -> Path:
    """A 2D slice-by-slice bundle whose 'network' is a 1x1 convolution: foreground where intensity > 0.5."""
    network = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        network.weight.fill_(10.0)
        network.bias.fill_(-5.0)
    network_def = {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 1}
    return make_bundle(root, network, network_def, **overrides)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_threshold_bundle(tmp_path_factory.mktemp("bundles") / "threshold")


RING_AFFINE = np.array([[-1.5, 0, 0, 10], [0, 1.5, 0, -4], [0, 0, 3, 2], [0, 0, 0, 1]])
VOLUME_AFFINE = np.array([[1.2, 0, 0, 0], [0, -1.2, 0, 5], [0, 0, -4, 1], [0, 0, 0, 1]])


def _off_centre_ring(centre=(7, 12)):
    """A ring away from the centre, so a flipped or transposed output shows."""
    return ring(21, centre, 3, 6)


def _volume():
    return np.stack([_off_centre_ring(), disc(21), ring(21)], axis=-1)


def write_inputs(folder: Path) -> Path:
    """ring/disc/volume NIfTI, a 2D MetaImage and a corrupt bad.nii.gz."""
    folder.mkdir()
    nib.save(nib.Nifti1Image(_off_centre_ring().astype(np.float32), RING_AFFINE), folder / "ring.nii.gz")
    nib.save(nib.Nifti1Image(disc(22).astype(np.int16), np.eye(4)), folder / "disc.nii")
    nib.save(nib.Nifti1Image(_volume().astype(np.float32), VOLUME_AFFINE), folder / "volume.nii.gz")
    nib.save(nib.Nifti1Image(ring(21)[..., None].astype(np.uint8), np.eye(4)), folder / "one_slice.nii.gz")
    scan = sitk.GetImageFromArray(_off_centre_ring().T.astype(np.float32))  # SimpleITK arrays are (y, x)
    scan.SetSpacing((0.5, 0.7))
    scan.SetOrigin((3.0, 4.0))
    sitk.WriteImage(scan, str(folder / "scan.mha"))
    (folder / "bad.nii.gz").write_bytes(np.random.default_rng(0).bytes(300))
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def inputs(tmp_path) -> Path:
    return write_inputs(tmp_path / "in")


def hash_tree(folder: Path) -> dict:
    return {
        p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """``monai-topo infer`` sets torch's threads for its process; here that process is the test run."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def infer(bundle, inputs, output, *extra) -> int:
    return main(["infer", "--bundle", str(bundle), "--input", str(inputs), "--output", str(output), "--quiet", *extra])


def read_report(output: Path) -> tuple[dict, dict]:
    """Rows by case from the JSON and from the CSV report."""
    content = json.loads((output / "inference_report.json").read_text())
    with open(output / "inference_report.csv", newline="") as stream:
        csv_rows = {row["case"]: row for row in csv.DictReader(stream)}
    return {row["case"]: row for row in content["cases"]}, csv_rows


CASES = {"bad", "disc", "one_slice", "ring", "scan", "volume"}
OUTPUTS = {f"{c}_seg.nii.gz" for c in CASES - {"bad"}} | {"inference_report.csv", "inference_report.json"}


def test_infer_keeps_geometry_reports_every_case_and_skips_the_corrupt_file(bundle, inputs, tmp_path):
    before = hash_tree(inputs)
    out = tmp_path / "out"
    assert infer(bundle, inputs, out) == 1  # bad.nii.gz failed
    rows, csv_rows = read_report(out)
    assert set(rows) == set(csv_rows) == CASES
    assert {c: r["status"] for c, r in rows.items()} == {c: "ok" if c != "bad" else "failed" for c in CASES}
    assert {c: r["status"] for c, r in csv_rows.items()} == {c: r["status"] for c, r in rows.items()}
    assert rows["bad"]["message"].startswith("reading the image:") and "gzip" in rows["bad"]["message"]
    # Only finished outputs and the report: no temporary or partial files, nothing for the bad case.
    assert set(os.listdir(out)) == OUTPUTS
    assert hash_tree(inputs) == before

    for case, affine, truth in [
        ("ring", RING_AFFINE, _off_centre_ring()),
        ("volume", VOLUME_AFFINE, _volume()),
        ("disc", np.eye(4), disc(22)),
        ("one_slice", np.eye(4), ring(21)[..., None]),
    ]:
        seg = nib.load(out / f"{case}_seg.nii.gz")
        source = nib.load(next(inputs.glob(f"{case}.nii*")))
        np.testing.assert_allclose(seg.affine, source.affine)
        np.testing.assert_allclose(seg.affine, affine)
        assert seg.shape == source.shape and seg.get_data_dtype() == np.uint8
        if case != "disc":  # rings already meet the prior, so the output is the thresholded input
            np.testing.assert_array_equal(np.asarray(seg.dataobj), truth)

    # The MetaImage went through SimpleITK: ITK's LPS geometry, written as a RAS NIfTI affine.
    seg = nib.load(out / "scan_seg.nii.gz")
    lps_to_ras = np.diag([-1, -1, 1, 1])
    itk_affine = np.array([[0.5, 0, 0, 3], [0, 0.7, 0, 4], [0, 0, 1, 0], [0, 0, 0, 1]])  # spacing, origin
    np.testing.assert_allclose(seg.affine, lps_to_ras @ itk_affine)
    np.testing.assert_array_equal(np.asarray(seg.dataobj), _off_centre_ring())

    assert rows["ring"]["betti_before"] == rows["ring"]["betti_after"] == [[1, 1]]
    assert rows["ring"]["iterations"] == 0 and rows["ring"]["items"] == 1
    assert rows["volume"]["items"] == 3  # slice by slice along the last axis
    assert rows["volume"]["betti_before"] == [[1, 1], [1, 0], [1, 1]]
    assert rows["volume"]["satisfied_before"] == 2
    assert rows["disc"]["betti_before"] == [[1, 0]] and rows["disc"]["iterations"] == 3
    assert all(rows[c]["seconds"] >= 0 and rows[c]["rank"] == 0 for c in CASES)


def test_second_run_skips_finished_cases_and_overwrite_redoes_them(bundle, inputs, tmp_path):
    before = hash_tree(inputs)
    out = tmp_path / "out"
    assert infer(bundle, inputs, out, "--no-postprocess") == 1
    first, _ = read_report(out)
    outputs = sorted(out.glob("*_seg.nii.gz"))
    for path in outputs:  # an old mtime shows whether a later run rewrote the file
        os.utime(path, ns=(10**9, 10**9))
    stale = out / ".tmp-0000-ring_seg.nii.gz"  # what an interrupted write leaves behind
    stale.write_bytes(b"half a file")

    assert infer(bundle, inputs, out, "--no-postprocess") == 1  # bad.nii.gz is retried and fails again
    second, csv_rows = read_report(out)
    assert {c: r["status"] for c, r in second.items()} == {c: "skipped" if c != "bad" else "failed" for c in CASES}
    assert {c: r["status"] for c, r in csv_rows.items()} == {c: r["status"] for c, r in second.items()}
    assert all(path.stat().st_mtime_ns == 10**9 for path in outputs)
    assert not stale.exists()
    for case in CASES - {"bad"}:  # the earlier results stay in the report
        assert second[case]["betti_after"] == first[case]["betti_after"]
        assert second[case]["iterations"] == first[case]["iterations"] == 0

    assert infer(bundle, inputs, out, "--no-postprocess", "--overwrite") == 1
    third, _ = read_report(out)
    assert {c: r["status"] for c, r in third.items()} == {c: "ok" if c != "bad" else "failed" for c in CASES}
    assert all(path.stat().st_mtime_ns != 10**9 for path in outputs)
    assert set(os.listdir(out)) == OUTPUTS
    assert hash_tree(inputs) == before


def test_an_interrupted_run_resumes_with_the_finished_rows(bundle, inputs, tmp_path, monkeypatch):
    out = tmp_path / "out"
    original = batch.process_case

    def interrupted_at_scan(model, case, *args, **kwargs):
        if case == "scan":
            raise KeyboardInterrupt
        return original(model, case, *args, **kwargs)

    monkeypatch.setattr(batch, "process_case", interrupted_at_scan)
    with pytest.raises(KeyboardInterrupt):
        infer(bundle, inputs, out)
    # Cases run in name order: bad, disc, one_slice, ring finished before the interruption and were kept.
    assert {p.name for p in out.glob("*_seg.nii.gz")} == {"disc_seg.nii.gz", "one_slice_seg.nii.gz", "ring_seg.nii.gz"}
    assert not (out / "inference_report.json").exists()
    monkeypatch.setattr(batch, "process_case", original)

    assert infer(bundle, inputs, out) == 1
    rows, _ = read_report(out)
    statuses = {c: "skipped" for c in ("disc", "one_slice", "ring")} | {"bad": "failed", "scan": "ok", "volume": "ok"}
    assert {c: r["status"] for c, r in rows.items()} == statuses
    assert rows["disc"]["iterations"] == 3 and rows["ring"]["betti_after"] == [[1, 1]]  # from the partial report
    assert set(os.listdir(out)) == OUTPUTS


@pytest.mark.parametrize("how", ["--threads", "MONAI_TOPO_NUM_THREADS"])
def test_infer_sets_the_threads_of_its_process(bundle, inputs, tmp_path, monkeypatch, how):
    torch.set_num_threads(2)
    if how == "--threads":
        extra = ["--threads", "1"]
    else:
        monkeypatch.setenv("MONAI_TOPO_NUM_THREADS", "1")
        extra = []
    assert infer(bundle, inputs, tmp_path, *extra) == 1  # the corrupt case fails, the others are written
    assert torch.get_num_threads() == 1
    assert OUTPUTS <= {p.name for p in tmp_path.iterdir()}


def test_bundle_end_slice_prior_gives_the_end_slices_their_prior(tmp_path):
    # Apical and basal slices may be discs, as in the cardiac bundle.
    bundle = make_threshold_bundle(tmp_path / "b", end_slice_prior=[1, [0, 1]], postprocess=False)
    inputs = tmp_path / "in"
    inputs.mkdir()
    stack = np.stack([disc(21), ring(21), ring(21), disc(21)], axis=-1).astype(np.float32)
    nib.save(nib.Nifti1Image(stack, np.eye(4)), inputs / "stack.nii.gz")
    assert infer(bundle, inputs, tmp_path / "out") == 0
    row = read_report(tmp_path / "out")[0]["stack"]
    assert row["priors"] == [[1, [0, 1]], [1, 1], [1, 1], [1, [0, 1]]]
    assert row["satisfied_before"] == 4
    assert infer(bundle, inputs, tmp_path / "fixed", "--prior", "1,1") == 0  # one prior for every slice
    row = read_report(tmp_path / "fixed")[0]["stack"]
    assert row["priors"] == [[1, 1]] * 4 and row["satisfied_before"] == 2


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_in_the_input_folder_is_refused(bundle, inputs, where, capsys):
    out = inputs if where == "same" else inputs / "seg"
    before = hash_tree(inputs)
    assert infer(bundle, inputs, out) == 2
    assert "input folder" in capsys.readouterr().err
    assert hash_tree(inputs) == before and not (inputs / "seg").exists()
    # A glob reads from the folder of what it matches: the same rule holds.
    assert infer(bundle, inputs / "*.nii.gz", inputs / "seg") == 2


def test_labels_give_dice_and_betti_error_as_computed_directly(bundle, inputs, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    broken = _off_centre_ring()
    broken[7, :10] = False  # cut the ring: (1, 0)
    nib.save(nib.Nifti1Image(broken.astype(np.uint8), RING_AFFINE), labels / "ring.nii.gz")
    volume_label = np.stack([_off_centre_ring(), ring(21), disc(21)], axis=-1).astype(np.uint8) * 3  # any non-zero
    nib.save(nib.Nifti1Image(volume_label, VOLUME_AFFINE), labels / "volume.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((22, 22), np.uint8), np.eye(4)), labels / "disc.nii")  # empty: Dice NaN
    out = tmp_path / "out"
    assert infer(bundle, inputs, out, "--labels", str(labels), "--no-postprocess") == 1
    rows, csv_rows = read_report(out)

    def direct(case, truth, per_slice):
        pred = np.asarray(nib.load(out / f"{case}_seg.nii.gz").dataobj) > 0
        truth = truth > 0
        dice = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
        pairs = [(pred[..., k], truth[..., k]) for k in range(pred.shape[-1])] if per_slice else [(pred, truth)]
        errors = [np.abs(np.subtract(betti_numbers(p), betti_numbers(t))).sum() for p, t in pairs]
        return dice, np.mean(errors)

    for case, truth, per_slice in [("ring", broken, False), ("volume", volume_label, True)]:
        dice, betti_error = direct(case, truth, per_slice)
        assert rows[case]["dice"] == pytest.approx(dice, abs=1e-6)
        assert rows[case]["betti_error"] == pytest.approx(betti_error)
        assert float(csv_rows[case]["dice"]) == pytest.approx(dice, abs=1e-6)
        assert rows[case]["label"] == str(labels / f"{case}.nii.gz")
    assert rows["ring"]["betti_error"] == 1  # (1, 1) against the cut ring's (1, 0)
    assert rows["disc"]["dice"] is None and csv_rows["disc"]["dice"] == ""
    assert rows["scan"]["label"] is None and rows["scan"]["dice"] is None


def test_label_of_another_shape_fails_that_case_only(bundle, inputs, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((5, 5), np.uint8), np.eye(4)), labels / "ring.nii.gz")
    out = tmp_path / "out"
    assert infer(bundle, inputs, out, "--labels", str(labels)) == 1
    rows, _ = read_report(out)
    assert rows["ring"]["status"] == "failed" and "label shape" in rows["ring"]["message"]
    assert not (out / "ring_seg.nii.gz").exists()
    assert rows["volume"]["status"] == "ok"


def test_prior_option_overrides_the_bundle_and_is_validated(bundle, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert infer(bundle, inputs / "ring.nii.gz", out, "--prior", "1,0", "--no-postprocess") == 0
    content = json.loads((out / "inference_report.json").read_text())
    assert content["run"]["prior"] == [1, 0] and content["run"]["postprocess"] is False
    assert content["cases"][0]["satisfied_before"] == 0  # a ring is not a disc
    assert infer(bundle, inputs / "ring.nii.gz", tmp_path / "other", "--prior", "[1,[0,2]]", "--no-postprocess") == 0
    assert infer(bundle, inputs, tmp_path / "x", "--prior", "1,1,1") == 2  # three numbers for 2D items
    assert "prior" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["infer", "--bundle", str(bundle), "--input", str(inputs), "--output", str(tmp_path), "--prior", "1,["])


def test_bundle_found_by_name_in_the_search_path(bundle, monkeypatch):
    monkeypatch.setenv(BUNDLES_ENV, str(bundle.parent))
    assert resolve_bundle(bundle.name) == bundle.resolve()
    with pytest.raises(ValueError, match="not a bundle folder"):
        resolve_bundle("no_such_bundle")


def torchrun_infer(bundle, inputs, out) -> subprocess.CompletedProcess:
    """``monai-topo infer`` on two CPU processes started by ``torchrun``."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "monai_topo.cli", "infer", "--bundle", str(bundle), "--input", str(inputs), "--output", str(out),
        "--device", "cpu", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


def test_two_processes_split_the_cases_and_write_each_output_once(bundle, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    names = [f"case{i}" for i in range(5)]
    for i, name in enumerate(names):
        image = _off_centre_ring() if i % 2 else disc(21)
        nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), inputs / f"{name}.nii.gz")
    out = tmp_path / "out"
    done = torchrun_infer(bundle, inputs, out)
    assert done.returncode == 0, done.stderr[-3000:]
    content = json.loads((out / "inference_report.json").read_text())
    assert content["run"]["world_size"] == 2
    assert [row["case"] for row in content["cases"]] == names  # each case exactly once
    assert [row["rank"] for row in content["cases"]] == [i % 2 for i in range(5)]  # round-robin by rank
    assert all(row["status"] == "ok" for row in content["cases"])
    reports = {"inference_report.csv", "inference_report.json"}
    assert set(os.listdir(out)) == {f"{n}_seg.nii.gz" for n in names} | reports  # no partial reports left


def test_a_setup_error_of_rank_0_stops_every_process_with_its_message(bundle, inputs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "inference_report.json").write_text("{}")  # read by rank 0 only
    done = torchrun_infer(bundle, inputs, out)
    assert done.returncode != 0
    assert done.stderr.count("monai-topo infer: error:") == 2, done.stderr[-3000:]  # both ranks, not rank 0 alone
    assert done.stderr.count("not a monai-topo report") == 2


def _canvas(shapes, gap=3):
    """Shapes side by side along the last axis, label i + 1 for shape i."""
    height = max(s.shape[0] for s in shapes)
    blocks = []
    for label, shape in enumerate(shapes, start=1):
        block = np.zeros((height, shape.shape[1] + gap, *shape.shape[2:]), np.uint8)
        block[: shape.shape[0], : shape.shape[1]] = shape * label
        blocks.append(block)
    return np.concatenate(blocks, axis=1)


@pytest.mark.parametrize("connectivity", ["full", "face"])
def test_betti_command_prints_known_numbers_per_label(tmp_path, capsys, connectivity):
    names_2d = ["disc", "ring", "two_rings", "figure_eight"]
    seg = _canvas([KNOWN_SHAPES[n][0]() for n in names_2d])
    nib.save(nib.Nifti1Image(seg, np.eye(4)), tmp_path / "seg2d.nii.gz")
    assert main(["betti", str(tmp_path / "seg2d.nii.gz"), "--json", "--connectivity", connectivity]) == 0
    table = json.loads(capsys.readouterr().out)["labels"]
    assert [(r["label"], tuple(r["betti"])) for r in table] == [
        (i, KNOWN_SHAPES[n][1]) for i, n in enumerate(names_2d, start=1)
    ]
    assert [r["voxels"] for r in table] == [int(KNOWN_SHAPES[n][0]().sum()) for n in names_2d]

    names_3d = ["ball", "shell", "solid_torus"]
    shapes = [KNOWN_SHAPES[n][0]() for n in names_3d]
    depth = max(s.shape[2] for s in shapes)
    shapes = [np.pad(s, ((0, 0), (0, 0), (0, depth - s.shape[2]))) for s in shapes]
    volume = _canvas(shapes)
    sitk.WriteImage(sitk.GetImageFromArray(volume.T.copy()), str(tmp_path / "seg3d.mha"))
    assert main(["betti", str(tmp_path / "seg3d.mha"), "--connectivity", connectivity]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["label", "voxels", "b0", "b1", "b2"]
    assert [tuple(map(int, line.split()[2:])) for line in lines[2:]] == [KNOWN_SHAPES[n][1] for n in names_3d]


def test_betti_command_reports_an_unreadable_file(tmp_path, capsys):
    (tmp_path / "bad.nii.gz").write_bytes(b"\x00" * 50)
    assert main(["betti", str(tmp_path / "bad.nii.gz")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_demo_still_runs(capsys):
    assert main(["demo", "--size", "32", "--bars", "2"]) == 0
    assert "Betti numbers" in capsys.readouterr().out


def _sunnybrook_run(bundle, data, out, *extra):
    images = data / "sunnybrook_myo" / "images"
    assert infer(bundle, images, out, "--labels", str(data / "sunnybrook_myo" / "labels"), *extra) == 0
    rows, _ = read_report(out)
    expected = sorted(p.name[: -len(".nii.gz")] for p in images.glob("*.nii.gz"))
    assert sorted(rows) == expected and len(expected) == 28
    assert all(row["status"] == "ok" and row["dice"] is not None for row in rows.values())
    for case in expected[:3]:
        np.testing.assert_allclose(
            nib.load(out / f"{case}_seg.nii.gz").affine, nib.load(images / f"{case}.nii.gz").affine
        )
    return rows


def test_sunnybrook_slices_through_a_stand_in_bundle(shared_data, bundle, tmp_path):
    """The real NIfTI slices, their labels and the report, with an untrained stand-in network (the point is the I/O)."""
    _sunnybrook_run(bundle, shared_data, tmp_path / "out", "--no-postprocess")


CARDIAC_CHECKPOINT = REPO / "bundles" / "cardiac_myocardium_topo" / "models" / "model.pt"


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not CARDIAC_CHECKPOINT.is_file(), reason="the cardiac bundle has no trained checkpoint")
def test_sunnybrook_slices_through_the_cardiac_bundle(shared_data, tmp_path):
    rows = _sunnybrook_run("cardiac_myocardium_topo", shared_data, tmp_path / "out")
    print({case: (row["dice"], row["betti_after"]) for case, row in rows.items()})


# ---- a model-zoo bundle with only the standard ids -------------------------------------------------

def make_minimal_bundle(root: Path) -> Path:
    """Only ``network_def``, ``preprocessing`` and ``inferer``, weights at the model zoo's ``models/model.pt``."""
    network_def = {"_target_": "monai.networks.blocks.Convolution", "spatial_dims": 2, "in_channels": 1,
                   "out_channels": 1, "kernel_size": 1, "conv_only": True}
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    config = {"network_def": network_def, "preprocessing": PREPROCESSING, "inferer": {"_target_": "SimpleInferer"}}
    (root / "configs" / "inference.json").write_text(json.dumps(config))
    from monai.networks.blocks import Convolution

    network = Convolution(2, 1, 1, kernel_size=1, conv_only=True)
    with torch.no_grad():
        network.conv.weight.fill_(10.0)
        network.conv.bias.fill_(-5.0)
    torch.save(network.state_dict(), root / "models" / "model.pt")
    return root


def test_infer_runs_a_bundle_with_only_the_model_zoo_ids(inputs, tmp_path):
    bundle = make_minimal_bundle(tmp_path / "minimal")
    out = tmp_path / "out"
    assert infer(bundle, inputs, out) == 1  # bad.nii.gz
    rows, _ = read_report(out)
    assert {c for c, r in rows.items() if r["status"] == "ok"} == CASES - {"bad"}
    # No prior in the bundle: the network's thresholded output, no refinement, no Betti numbers claimed.
    np.testing.assert_array_equal(np.asarray(nib.load(out / "ring_seg.nii.gz").dataobj), _off_centre_ring())
    np.testing.assert_array_equal(np.asarray(nib.load(out / "volume_seg.nii.gz").dataobj), _volume())
    assert rows["volume"]["items"] == 3 and rows["volume"]["priors"] == [None] * 3  # 2D network: slice by slice
    assert rows["ring"]["betti_after"] is None and rows["ring"]["iterations"] is None
    # A prior on the command line: every slice refined towards it (discs are not rings: refinement runs).
    assert infer(bundle, inputs / "volume.nii.gz", tmp_path / "prior", "--prior", "1,1") == 0
    row = read_report(tmp_path / "prior")[0]["volume"]
    assert row["priors"] == [[1, 1]] * 3 and row["betti_before"] == [[1, 1], [1, 0], [1, 1]]
    assert row["satisfied_before"] == 2 and row["iterations"] > 0


# ---- setup errors: one line, exit code 2 ----------------------------------------------------------

def _setup_cases(bundle: Path, tmp_path: Path) -> dict:
    (tmp_path / "file.txt").write_text("a file")
    corrupt = make_threshold_bundle(tmp_path / "corrupt")
    (corrupt / "models" / "model.pt").write_bytes(np.random.default_rng(1).bytes(400))
    truncated = make_threshold_bundle(tmp_path / "truncated")
    data = (truncated / "models" / "model.pt").read_bytes()
    (truncated / "models" / "model.pt").write_bytes(data[: len(data) // 2])
    pickled = make_threshold_bundle(tmp_path / "pickled")
    torch.save({"model": torch.nn.Conv2d(1, 1, 1)}, pickled / "models" / "model.pt")  # a module, not weights
    old_report = tmp_path / "old"
    old_report.mkdir()
    (old_report / "inference_report.json").write_text("{}")
    no_labels = tmp_path / "other_labels"
    no_labels.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((4, 4), np.uint8), np.eye(4)), no_labels / "someone_else.nii.gz")
    return {
        "output under a file": ([str(bundle), str(tmp_path / "file.txt" / "out")], "is a file"),
        "output not creatable": ([str(bundle), "/proc/monai-topo-out"], "not writable"),
        "output in the package": ([str(bundle), str(Path(batch.__file__).parents[1] / "bundles" / "out")],
                                  "inside the package folder"),
        "prior {}": ([str(bundle), str(tmp_path / "o1"), "--prior", "{}"], "prior"),
        "device gpu0": ([str(bundle), str(tmp_path / "o2"), "--device", "gpu0"], "not a torch device name"),
        "device cuda on a CPU build": ([str(bundle), str(tmp_path / "o3"), "--device", "cuda"], "not available"),
        "random bytes for model.pt": ([str(corrupt), str(tmp_path / "o4")], "damaged"),
        "truncated model.pt": ([str(truncated), str(tmp_path / "o5")], "damaged"),
        "pickled module in model.pt": ([str(pickled), str(tmp_path / "o6")], "other than weights"),
        "earlier report {}": ([str(bundle), str(old_report)], "not a monai-topo report"),
        "threads 0": ([str(bundle), str(tmp_path / "o8"), "--threads", "0"], "--threads"),
        "labels named like no image": ([str(bundle), str(tmp_path / "o7"), "--labels", str(no_labels)], "named like"),
    }


def test_every_setup_error_is_one_line_and_exit_code_2(bundle, inputs, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("the CPU-build case needs a machine without CUDA")
    for name, (args, words) in _setup_cases(bundle, tmp_path).items():
        bundle_arg, output, *extra = args
        code = main(["infer", "--bundle", bundle_arg, "--input", str(inputs), "--output", output, "--quiet", *extra])
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        assert len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err, (name, err)
        assert "weights_only=False" not in err, name  # never the advice to unpickle an untrusted file
    assert not (tmp_path / "o1").exists() or not any((tmp_path / "o1").iterdir())


# ---- damaged earlier outputs and kills at every write ------------------------------------------------

def test_damaged_earlier_outputs_are_redone(bundle, inputs, tmp_path):
    out = tmp_path / "out"
    assert infer(bundle, inputs, out, "--no-postprocess") == 1
    reference = {p.name: np.asarray(nib.load(p).dataobj) for p in out.glob("*_seg.nii.gz")}
    (out / "ring_seg.nii.gz").write_bytes(b"")  # 0 bytes, as a full disk leaves it
    data = (out / "volume_seg.nii.gz").read_bytes()
    (out / "volume_seg.nii.gz").write_bytes(data[: len(data) // 2])  # cut short
    assert infer(bundle, inputs, out, "--no-postprocess") == 1
    rows, _ = read_report(out)
    assert rows["ring"]["status"] == rows["volume"]["status"] == "ok"
    assert rows["disc"]["status"] == rows["scan"]["status"] == "skipped"
    for name, array in reference.items():
        np.testing.assert_array_equal(np.asarray(nib.load(out / name).dataobj), array)


COMPLETE = ("items", "priors", "betti_before", "betti_after", "satisfied_before", "satisfied_after", "iterations",
            "seconds")


KILLED_AT = """
import os, signal, sys
from monai_topo.cli import main
from monai_topo.inference import atomic
point, calls = int(sys.argv[1]), []

def hook(step, final):
    calls.append(step)
    if len(calls) == point:
        os.kill(os.getpid(), signal.SIGKILL)

atomic.FAULT_HOOK = hook
code = main(sys.argv[2:])
print(len(calls))
sys.exit(code)
"""


def _run_killed_at(bundle, inputs, out, point: int) -> int:
    """Run infer in a child process that SIGKILLs itself at the ``point``-th atomic write step; the hook count.

    A fresh process, not ``os.fork()``: a forked child of this multi-threaded test process can hang
    in its first OpenMP region (the parent's thread pool does not survive the fork).
    """
    command = [sys.executable, "-c", KILLED_AT, str(point), "infer", "--bundle", str(bundle), "--input", str(inputs),
               "--output", str(out), "--quiet", "--no-postprocess"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode == -signal.SIGKILL:
        return point
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.split()[-1])


def test_a_kill_at_any_write_step_leaves_a_run_that_resumes_with_a_complete_report(bundle, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    nib.save(nib.Nifti1Image(_off_centre_ring().astype(np.float32), RING_AFFINE), inputs / "ring.nii.gz")
    nib.save(nib.Nifti1Image(_volume().astype(np.float32), VOLUME_AFFINE), inputs / "volume.nii.gz")
    steps = _run_killed_at(bundle, inputs, tmp_path / "clean", point=0)  # no kill: how many steps there are
    reference = {p.name: np.asarray(nib.load(p).dataobj) for p in (tmp_path / "clean").glob("*_seg.nii.gz")}
    assert steps >= 8 and len(reference) == 2
    for point in range(1, steps + 1):
        out = tmp_path / f"killed_at_{point}"
        _run_killed_at(bundle, inputs, out, point)
        assert infer(bundle, inputs, out, "--no-postprocess") == 0, point
        rows, csv_rows = read_report(out)
        assert set(rows) == set(csv_rows) == {"ring", "volume"}, point
        for case, row in rows.items():
            assert row["status"] in ("ok", "skipped"), (point, row)
            assert all(row[key] is not None for key in COMPLETE), (point, row)
        assert sorted(os.listdir(out)) == sorted([*reference, "inference_report.csv", "inference_report.json"]), point
        for name, array in reference.items():
            np.testing.assert_array_equal(np.asarray(nib.load(out / name).dataobj), array)


def test_bundle_list_and_copy(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(BUNDLES_ENV, raising=False)
    assert main(["bundle", "list"]) == 0
    listed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert {"cardiac_myocardium_topo", "placenta_topo"} <= set(listed)
    assert all((Path(root) / "configs" / "inference.json").is_file() for root in listed.values())
    assert main(["bundle", "copy", "placenta_topo", str(tmp_path)]) == 0
    root = Path(capsys.readouterr().out.strip())
    assert root == tmp_path / "placenta_topo"
    source = Path(listed["placenta_topo"])
    shipped = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()
               and not {"dataset", "eval", "__pycache__"} & set(p.relative_to(source).parts)}
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == shipped
    assert all(os.access(p, os.W_OK) for p in root.rglob("*"))
    assert main(["bundle", "copy", "placenta_topo", str(tmp_path)]) == 2  # no overwriting a copy
    assert "exists already" in capsys.readouterr().err
    assert main(["bundle", "copy", "no_such_bundle", str(tmp_path)]) == 2
