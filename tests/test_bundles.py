"""The MONAI bundles: tiny train -> inference -> evaluate runs, the CLI contract, metadata, export, torchrun.

Every run works on a copy of the bundle in a temporary folder, so nothing is written into the repository.
"""

import csv
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_metadata, verify_net_in_out
from monai.inferers import Inferer, SimpleInferer, SlidingWindowInferer
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from monai.utils import set_determinism

from monai_topo.cli import main as cli_main
from monai_topo.inference import SliceWiseInferer
from monai_topo.transforms import refine_with_topology

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
CARDIAC, PLACENTA = "cardiac_myocardium_topo", "placenta_topo"
SCHEMA = BUNDLES / "meta_schema.json"

# Few, small items and short runs: each bundle trains, infers and evaluates in seconds.
TINY_DATA = {
    CARDIAC: {"synthetic_data": {"n_train": 2, "n_unlabelled": 2, "n_val": 1, "n_test": 2, "shape": [32, 32]},
              "roi_size": [32, 32], "generate_synthetic": True},
    PLACENTA: {"synthetic_data": {"n_train": 2, "n_unlabelled": 0, "n_val": 1, "n_test": 2, "shape": [24, 32, 32]},
               "roi_size": [24, 32, 32], "generate_synthetic": True},
}
TINY_TRAIN = {
    CARDIAC: {"max_epochs": 2, "topo_start_epoch": 2, "val_interval": 1, "batch_size": 2, "unlabelled_batch_size": 2},
    PLACENTA: {"max_epochs": 2, "val_interval": 1, "batch_size": 2},
}
CONTRACT_IDS = ("bundle_root", "device", "network_def", "network", "ckpt_path", "spatial_dims", "prior", "postprocess",
                "refine_args", "inferer", "preprocessing", "postprocessing")


def copy_bundle(name: str, destination: Path) -> Path:
    """A copy of a bundle's sources (no data, weights or outputs a developer may have left in the tree)."""
    root = destination / name
    shutil.copytree(BUNDLES / name, root, ignore=shutil.ignore_patterns("dataset", "models", "eval", "__pycache__"))
    return root


def hash_tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_workflow(root: Path, configs, workflow_type: str, **override) -> None:
    """Run ``configs`` of the bundle at ``root`` in-process, as ``python -m monai.bundle run`` does."""
    workflow = ConfigWorkflow(
        config_file=[str(root / "configs" / name) for name in configs],
        logging_file=False,  # the bundle's logging.conf would reconfigure the test process's loggers
        workflow_type=workflow_type,
        bundle_root=str(root),
        **override,
    )
    workflow.initialize()
    assert not workflow.check_properties(), f"{configs} lacks MONAI bundle properties"
    workflow.run()
    workflow.finalize()


def inference_parser(root: Path) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser["bundle_root"] = str(root)
    return parser


@pytest.fixture(scope="module", params=[CARDIAC, PLACENTA])
def trained_bundle(request, tmp_path_factory):
    """A bundle copy trained for two epochs on tiny synthetic data (the checkpoint under models/)."""
    name = request.param
    root = copy_bundle(name, tmp_path_factory.mktemp(name))
    try:
        run_workflow(root, ["train.json"], "train", **TINY_DATA[name], **TINY_TRAIN[name])
    finally:
        set_determinism(seed=None)  # the bundle seeds every generator; give the other tests theirs back
    assert (root / "models" / "model.pt").is_file()
    return name, root


def test_train_writes_checkpoint_and_generates_the_datalist(trained_bundle):
    name, root = trained_bundle
    datalist = ConfigParser.load_config_file(root / "dataset" / "datalist.json")
    assert set(datalist) >= {"training", "unlabelled", "validation", "test"}
    assert len(datalist["training"]) == TINY_DATA[name]["synthetic_data"]["n_train"]
    state = torch.load(root / "models" / "model.pt", map_location="cpu")
    network = inference_parser(root).get_parsed_content("network_def")
    network.load_state_dict(state)  # a bare state dict of the network, loadable by inference


def test_inference_keeps_the_affine_of_each_input(trained_bundle, tmp_path):
    name, root = trained_bundle
    run_workflow(root, ["inference.json"], "inference", output_dir=str(tmp_path), **TINY_DATA[name],
                 refine_args={"iterations": 2, "lambda_topo": 0.01, "sigmoid": True})
    inputs = sorted((root / "dataset" / "images").glob("test_*.nii.gz"))
    assert len(inputs) == TINY_DATA[name]["synthetic_data"]["n_test"]
    for path in inputs:
        output = nib.load(tmp_path / path.name.replace(".nii.gz", "_seg.nii.gz"))
        source = nib.load(path)
        assert output.shape == source.shape
        np.testing.assert_allclose(output.affine, source.affine)
        assert set(np.unique(np.asarray(output.dataobj))) <= {0, 1}


def test_inference_on_a_folder_keeps_an_oblique_affine(trained_bundle, tmp_path):
    """A volume with a rotated, shifted affine; for the cardiac bundle a 3D stack, segmented slice by slice."""
    name, root = trained_bundle
    images = [nib.load(p).get_fdata() for p in sorted((root / "dataset" / "images").glob("test_*.nii.gz"))]
    # cardiac: three short-axis slices stacked along the last axis
    volume = (np.stack(images + images[:1], axis=-1) if name == CARDIAC else images[0]).astype(np.float32)
    affine = np.array([[0, -1.5, 0, 10], [1.5, 0, 0, -20], [0, 0, 8, 5], [0, 0, 0, 1]], float)
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "in" / "case.nii.gz")
    for postprocess in (False, True):
        out = tmp_path / f"out_{postprocess}"
        run_workflow(root, ["inference.json"], "inference", input_dir=str(tmp_path / "in"), output_dir=str(out),
                     postprocess=postprocess, refine_args={"iterations": 1, "sigmoid": True}, **TINY_DATA[name])
        result = nib.load(out / "case_seg.nii.gz")
        assert result.shape == volume.shape
        np.testing.assert_allclose(result.affine, affine)


def test_cardiac_inference_on_real_sunnybrook_slices(trained_bundle, shared_data, tmp_path):
    name, root = trained_bundle
    if name != CARDIAC:
        pytest.skip("the Sunnybrook slices are cardiac")
    (tmp_path / "in").mkdir()
    sources = sorted((shared_data / "sunnybrook_myo" / "images").glob("*.nii.gz"))[:3]
    for path in sources:  # 256x256 int16 slices, larger than the network's window
        (tmp_path / "in" / path.name).symlink_to(path)
    run_workflow(root, ["inference.json"], "inference", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"),
                 refine_args={"iterations": 1, "sigmoid": True}, roi_size=[128, 128])
    for path in sources:
        result, source = nib.load(tmp_path / "out" / path.name.replace(".nii.gz", "_seg.nii.gz")), nib.load(path)
        assert result.shape == source.shape
        np.testing.assert_allclose(result.affine, source.affine)


def test_cardiac_end_slices_get_the_range_prior(tmp_path):
    parser = inference_parser(copy_bundle(CARDIAC, tmp_path))
    inferer = parser.get_parsed_content("inferer")
    assert isinstance(inferer, SliceWiseInferer)
    ring, end = parser["prior"], parser["end_slice_prior"]
    assert inferer.item_priors(1, sliced=True) == [ring]
    assert inferer.item_priors(5, sliced=True) == [end, ring, ring, ring, end]
    assert inferer.item_priors(1, sliced=False) == [ring]


class _CountingInferer(SimpleInferer):
    calls = 0

    def __call__(self, inputs, network, *args, **kwargs):
        self.calls += 1
        return super().__call__(inputs, network, *args, **kwargs)


def test_refinement_runs_through_the_refine_inferer():
    """``refine_inferer`` serves the refinement (its initial prediction and each step), ``inferer`` the
    unrefined output; for a window-independent network both give the same refined output."""
    torch.manual_seed(0)
    net, x = torch.nn.Conv3d(1, 1, 1), torch.rand(1, 1, 16, 16, 16)  # 1x1x1: no window edge effects
    args = {"iterations": 3, "stop_when_satisfied": False, "lr": 1e-2}
    window, direct = SlidingWindowInferer((16, 16, 8), overlap=0.5), _CountingInferer()
    refined = SliceWiseInferer(window, prior=[1, 0, 0], refine_args=args, refine_inferer=direct)(x, net)
    assert direct.calls == 4  # the initial prediction and three steps
    windowed = SliceWiseInferer(window, prior=[1, 0, 0], refine_args=args)(x, net)
    torch.testing.assert_close(refined, windowed, rtol=1e-4, atol=1e-4)
    plain, unrefined = _CountingInferer(), _CountingInferer()
    out = SliceWiseInferer(plain, prior=[1, 0, 0], refine=False, refine_inferer=unrefined)(x, net)
    assert plain.calls == 1 and unrefined.calls == 0
    with torch.no_grad():
        torch.testing.assert_close(out, net(x))


def test_evaluate_saves_dice_and_topology_metrics_as_csv(trained_bundle, tmp_path):
    name, root = trained_bundle
    run_workflow(root, ["inference.json", "evaluate.json"], "inference", output_dir=str(tmp_path), postprocess=False,
                 **TINY_DATA[name])
    with open(tmp_path / "metrics.csv") as stream:
        metrics = {row[0]: float(row[1]) for row in csv.reader(stream)}
    dims = range(2 if name == CARDIAC else 3)
    per_dimension = {f"betti_matching_error_dim{d}" for d in dims}
    assert set(metrics) == {"mean_dice", "topological_correctness", "betti_error", "betti_matching_error", "cldice",
                            *per_dimension}
    assert all(0 <= metrics[k] <= 1 for k in ("mean_dice", "topological_correctness", "cldice"))
    assert metrics["betti_error"] >= 0 and metrics["betti_matching_error"] >= 0
    # the total is the sum over the dimensions
    assert metrics["betti_matching_error"] == pytest.approx(sum(metrics[k] for k in per_dimension))
    with open(tmp_path / "topological_correctness_raw.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == TINY_DATA[name]["synthetic_data"]["n_test"]
    assert all(Path(row["filename"]).name.startswith("test_") for row in rows)


@pytest.mark.parametrize("name", [CARDIAC, PLACENTA])
def test_inference_contract_needs_no_dataset(name, tmp_path):
    """The ids that ``monai-topo infer`` reads from inference.json, instantiated with no data on disk."""
    root = copy_bundle(name, tmp_path)
    parser = inference_parser(root)
    values = {key: parser.get_parsed_content(key) for key in CONTRACT_IDS}
    assert not (root / "dataset").exists()
    assert Path(values["ckpt_path"]) == root / "models" / "model.pt"
    assert values["spatial_dims"] == (2 if name == CARDIAC else 3)
    assert values["postprocess"] is True
    assert list(values["prior"]) == ([1, 1] if name == CARDIAC else [1, 0, 0])
    assert set(values["refine_args"]) <= set(refine_with_topology.__kwdefaults__)
    assert values["refine_args"]["lambda_topo"] == (0.01 if name == CARDIAC else 0.005)
    inferer = values["inferer"]
    assert isinstance(inferer, SliceWiseInferer) and isinstance(inferer.inferer, Inferer)
    assert inferer.refine is True and inferer.spatial_dims == values["spatial_dims"]
    assert list(inferer.prior) == list(values["prior"]) and inferer.refine_args == values["refine_args"]
    assert isinstance(values["network"], torch.nn.Module) and isinstance(values["device"], torch.device)

    preprocessing = values["preprocessing"]
    assert isinstance(preprocessing, Compose)
    assert isinstance(preprocessing.transforms[0], LoadImaged) and preprocessing.transforms[0].keys == ("image",)
    assert isinstance(preprocessing.transforms[1], EnsureChannelFirstd)
    shape = (40, 48) if name == CARDIAC else (24, 40, 32)
    path = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random(shape).astype(np.float32), np.eye(4)), path)
    image = preprocessing({"image": str(path)})["image"]
    assert image.shape[0] == 1 and image.ndim == len(shape) + 1 and image.dtype == torch.float32
    with torch.no_grad():
        logits = inferer.inferer(image[None].to(values["device"]), values["network"].eval())
    assert tuple(logits.shape) == (1, 1, *image.shape[1:])


@pytest.mark.parametrize("name", [CARDIAC, PLACENTA])
def test_metadata_verifies_offline_against_the_vendored_schema(name):
    verify_metadata(meta_file=str(BUNDLES / name / "configs" / "metadata.json"), filepath=str(SCHEMA))


def test_ckpt_export_gives_the_network_output(trained_bundle, tmp_path):
    name, root = trained_bundle
    exported = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(exported), ckpt_file=str(root / "models" / "model.pt"),
                meta_file=str(root / "configs" / "metadata.json"),
                config_file=str(root / "configs" / "inference.json"), bundle_root=str(root))
    scripted = torch.jit.load(str(exported))
    network = inference_parser(root).get_parsed_content("network_def")
    network.load_state_dict(torch.load(root / "models" / "model.pt", map_location="cpu"))
    x = torch.rand(2, 1, *TINY_DATA[name]["roi_size"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(scripted.eval()(x), network.eval()(x))


def shipped_weights(name: str) -> Path:
    path = BUNDLES / name / "models" / "model.pt"
    if not path.is_file() and name == CARDIAC:
        pytest.skip("the cardiac weights are trained on real MRI in issue 14's data branch")
    assert path.is_file(), f"{path} is missing: the bundle must ship its weights"
    return path


@pytest.mark.parametrize("name", [CARDIAC, PLACENTA])
def test_model_zoo_files_and_changelog(name):
    """What the model zoo's CI requires or prefers of a bundle folder."""
    root = BUNDLES / name
    for required in ("LICENSE", "configs/metadata.json", "configs/inference.json", "docs/README.md"):
        assert (root / required).is_file(), required
    shipped_weights(name)
    metadata = json.loads((root / "configs" / "metadata.json").read_text())
    assert metadata["version"] in metadata["changelog"]
    assert (name == PLACENTA) <= ("phantom" in metadata["data_source"] and "phantom" in metadata["description"])


@pytest.mark.parametrize("name", [CARDIAC, PLACENTA])
def test_verify_net_in_out_with_the_metadata_shapes(name, tmp_path):
    """MONAI's own check, as the model zoo's CI runs it: n=1 and n=2 of the metadata's shapes, which must be
    large enough that the U-Net's bottleneck is more than one pixel (instance norm raises on 1×1)."""
    root = copy_bundle(name, tmp_path)
    metadata = json.loads((root / "configs" / "metadata.json").read_text())
    assert metadata["network_data_format"]["inputs"]["image"]["spatial_shape"][0] == {CARDIAC: "32*n", PLACENTA: "16*n"}[name]
    for n in (1, 2):
        verify_net_in_out(net_id="network_def", meta_file=str(root / "configs" / "metadata.json"),
                          config_file=str(root / "configs" / "inference.json"), bundle_root=str(root), n=n, any=1,
                          device="cpu")


@pytest.mark.parametrize("name", [CARDIAC, PLACENTA])
def test_ckpt_export_of_the_shipped_weights(name, tmp_path):
    weights = shipped_weights(name)
    root = BUNDLES / name
    exported = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(exported), ckpt_file=str(weights),
                meta_file=str(root / "configs" / "metadata.json"),
                config_file=str(root / "configs" / "inference.json"), bundle_root=str(root))
    network = inference_parser(root).get_parsed_content("network_def")
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    x = torch.rand(1, 1, *[32] * (2 if name == CARDIAC else 3), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(exported)).eval()(x), network.eval()(x))


@pytest.mark.parametrize("config", ["inference.json", "train.json"])
def test_missing_datalist_without_the_switch_is_an_error(config, tmp_path):
    root = copy_bundle(PLACENTA, tmp_path)
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / config))
    parser["bundle_root"] = str(root)
    with pytest.raises(RuntimeError) as caught:
        parser.get_parsed_content("data" if config == "inference.json" else "train_data")
    cause = caught.value
    while cause.__cause__ is not None:
        cause = cause.__cause__
    assert isinstance(cause, FileNotFoundError)
    assert str(root / "dataset" / "datalist.json") in str(cause) and "generate_synthetic" in str(cause)
    assert not (root / "dataset").exists()


def test_inference_on_an_input_folder_writes_only_its_outputs(trained_bundle, tmp_path):
    name, root = trained_bundle
    source = sorted((root / "dataset" / "images").glob("test_*.nii.gz"))[0]
    (tmp_path / "in").mkdir()
    shutil.copy(source, tmp_path / "in" / "case.nii.gz")
    before, inputs = hash_tree(root), hash_tree(tmp_path / "in")
    # No generate_synthetic, no dataset: nothing may be generated for an input folder.
    run_workflow(root, ["inference.json"], "inference", input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"),
                 refine_args={"iterations": 1, "sigmoid": True}, roi_size=TINY_DATA[name]["roi_size"])
    assert hash_tree(root) == before and hash_tree(tmp_path / "in") == inputs
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]
    assert os.listdir(tmp_path / "out") == ["case_seg.nii.gz"]


def test_bundle_and_cli_give_the_same_segmentation(trained_bundle, tmp_path):
    """The same input through ``monai.bundle run`` and ``monai-topo infer``: one inference path, one result."""
    name, root = trained_bundle
    bundle = tmp_path / "bundle"
    shutil.copytree(root, bundle, ignore=shutil.ignore_patterns("dataset", "eval"))
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    config["roi_size"] = TINY_DATA[name]["roi_size"]
    config["refine_args"].update(iterations=3, lr=1e-2, stop_when_satisfied=False)  # refinement changes the output
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    images = [nib.load(p) for p in sorted((root / "dataset" / "images").glob("test_*.nii.gz"))]
    (tmp_path / "in").mkdir()
    nib.save(images[0], tmp_path / "in" / "item.nii.gz")
    if name == CARDIAC:  # and a stack of three slices, the end ones with the looser prior
        stack = np.stack([np.asarray(i.dataobj) for i in images + images[:1]], -1).astype(np.float32)
        nib.save(nib.Nifti1Image(stack, np.diag([1.5, 1.5, 8.0, 1.0])), tmp_path / "in" / "stack.nii.gz")
    run_workflow(bundle, ["inference.json"], "inference", input_dir=str(tmp_path / "in"),
                 output_dir=str(tmp_path / "by_bundle"))
    assert cli_main(["infer", "--bundle", str(bundle), "--input", str(tmp_path / "in"),
                     "--output", str(tmp_path / "by_cli"), "--quiet"]) == 0
    report = {row["case"]: row for row in json.loads((tmp_path / "by_cli" / "inference_report.json").read_text())["cases"]}
    for case in os.listdir(tmp_path / "in"):
        seg = case.replace(".nii.gz", "_seg.nii.gz")
        by_bundle, by_cli = nib.load(tmp_path / "by_bundle" / seg), nib.load(tmp_path / "by_cli" / seg)
        np.testing.assert_array_equal(np.asarray(by_cli.dataobj), np.asarray(by_bundle.dataobj))
        np.testing.assert_allclose(by_cli.affine, by_bundle.affine)
        assert report[case[: -len(".nii.gz")]]["iterations"] > 0
    if name == CARDIAC:
        assert report["stack"]["priors"] == [[1, [0, 1]], [1, 1], [1, [0, 1]]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_torchrun_training_on_cpu(tmp_path):
    """``torchrun --nproc_per_node 2`` with the multi-GPU override: gloo on CPU, both samplers split."""
    root = copy_bundle(CARDIAC, tmp_path)
    # one validation item per process: MONAI's DistributedSampler refuses a rank without data
    overrides = {**TINY_DATA[CARDIAC], **TINY_TRAIN[CARDIAC]}
    overrides["synthetic_data"] = {**overrides["synthetic_data"], "n_val": 2}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
        "-m", "monai.bundle", "run",
        "--config_file", "['configs/train.json','configs/multi_gpu_train.json']",
        "--bundle_root", str(root),
    ]
    for key, value in overrides.items():
        command += [f"--{key}", repr(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Engine run finished" in result.stdout + result.stderr
    state = torch.load(root / "models" / "model.pt", map_location="cpu")
    assert not any(key.startswith("module.") for key in state)  # saved unwrapped from DistributedDataParallel
