import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import export  # noqa: E402
import train  # noqa: E402

SAMPLE = ROOT / "dataset" / "oxford-iiit-pet-sample"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains or sweeps for many seconds (make test-fast leaves them out)")


def train_args(root, *extra):
    """train.py's arguments for a quick run on the bundled sample: 32 px, batch 8, 1 epoch, outputs under root."""
    return train.get_args_parser().parse_args([
        "--data_path", str(SAMPLE), "--image_size", "32", "-b", "8", "-e", "1", "--num_workers", "0",
        "--device", "cpu", "--save_dir", str(Path(root) / "saved_models"), "--log_dir", str(Path(root) / "checkpoints"),
        *extra])


@contextmanager
def interrupted_in_epoch(stop_epoch):
    """Within the block, train.py's epoch stop_epoch ends in Ctrl-C (KeyboardInterrupt), as an interrupted run's."""
    one_epoch = train.train_one_epoch

    def interrupted(training, loader, device, args, epoch):
        if epoch == stop_epoch:
            raise KeyboardInterrupt
        return one_epoch(training, loader, device, args, epoch)

    train.train_one_epoch = interrupted
    try:
        yield
    finally:
        train.train_one_epoch = one_epoch


def randomize_batchnorm_statistics(model):
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)


def foreign_onnx_file(path):
    """A valid ONNX model of someone else's: Identity, without this project's metadata."""
    import onnx

    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["images"], ["logits"])], "identity",
        [onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 3, "height", "width"])])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)
    return path


# ---------------------------------------------------------------- small datasets on disk

def random_rgb(height=10, width=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def striped_trimap(height, width):
    """Pet (1) on the left, border (3) in the middle, background (2) on the right."""
    trimap = np.full((height, width), 2, np.uint8)
    trimap[:, : width // 3] = 1
    trimap[:, width // 3: width // 2] = 3
    return trimap


def add_sample(root, name, image=None, format="PNG"):
    """Write images/<name>.jpg (in the given format, whatever the name says) and a trimap of its size."""
    image = Image.fromarray(random_rgb()) if image is None else image
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    image.save(root / "images" / f"{name}.jpg", format=format)
    Image.fromarray(striped_trimap(image.height, image.width)).save(root / "annotations" / "trimaps" / f"{name}.png")


def write_lists(root, trainval=(), test=()):
    for file, names in (("trainval.txt", trainval), ("test.txt", test)):
        (root / "annotations" / file).write_text("".join(f"{name} 1 1 1\n" for name in names))


def make_dataset(root, names, mode="test"):
    """A dataset whose `mode` split holds exactly `names` (for train: every name after a first valid one)."""
    for name in names:
        add_sample(root, name)
    if mode == "test":
        write_lists(root, test=names)
    else:
        add_sample(root, "valid_0")
        write_lists(root, trainval=["valid_0", *names])
    return root


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(run folder, best model) of a ResNet34_Unet trained once for the session: 2 epochs at 32 px on the sample.
    Tests read it; a test that changes a run trains its own."""
    root = tmp_path_factory.mktemp("trained")
    train.main(train_args(root, "--model_type", "resnet34_unet", "-e", "2"))
    return root, root / "saved_models" / "ResNet34_Unet_bs8_best_model.pth"


@pytest.fixture(scope="session")
def exported(trained):
    """(ONNX file, parity figures) of the session's trained model, written by src/export.py beside its checkpoint."""
    _, model = trained
    results = export.main(export.get_args_parser().parse_args(["--model", str(model)]))
    return model.with_suffix(".onnx"), results
