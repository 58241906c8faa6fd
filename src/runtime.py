"""A trained model as the scripts run it: a .pth checkpoint in PyTorch, or an .onnx file of src/export.py in ONNX
Runtime, both behind one call, net(images) -> logits, so that evaluation and inference do not care which."""
import importlib
import json
from pathlib import Path

import torch

from errors import ProjectError
from models import check_flags_agree_with_record, load_trained_model

# The metadata_props of an exported file, each a JSON string: the checkpoint's model record and training arguments.
METADATA_KEYS = ("model_record", "args")


def import_onnx_package(name):
    """Import onnx, onnxscript or onnxruntime, or say which file lists them."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ProjectError(f"the Python package {name} is not installed; ONNX export and ONNX Runtime inference need "
                           "the packages of requirements-onnx.txt: pip install -r requirements-onnx.txt") from None


class OnnxModel(torch.nn.Module):
    """An ONNX Runtime session with a PyTorch network's call: float32 N x 3 x H x W images in, logits out, on the
    images' device (both pass through host memory, whatever the provider). A module without parameters, so that
    evaluation can switch its mode as it does a network's."""

    def __init__(self, session):
        super().__init__()
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.runtime = "onnxruntime-" + session.get_providers()[0].removesuffix("ExecutionProvider").lower()

    def forward(self, images):
        (logits,) = self.session.run(None, {self.input_name: images.float().contiguous().cpu().numpy()})
        return torch.from_numpy(logits).to(images.device)


def execution_providers(onnxruntime, device):
    """ONNX Runtime's CUDA provider for a CUDA device when the installed ONNX Runtime has it, else the CPU's."""
    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load_onnx_model(path, device, model_type=None, use_cbam=None):
    """(OnnxModel, {"model_record", "args"}) of a file written by src/export.py; model_type/use_cbam, when given,
    must agree with its record."""
    onnxruntime = import_onnx_package("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"--model {path}: no such file.")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # as many threads as PyTorch's operators use
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=execution_providers(onnxruntime, device))
    # ONNX Runtime reports a damaged or foreign file with several exception types of its own.
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ProjectError(f"--model {path} could not be read as an ONNX model ({reason}).") from None
    metadata = session.get_modelmeta().custom_metadata_map
    try:
        record, args = (json.loads(metadata[key]) for key in METADATA_KEYS)
    except (KeyError, ValueError):
        raise ProjectError(f"--model {path} is an ONNX model but not one of this project's: its metadata has no model "
                           "record, so nothing says how to feed it; export a checkpoint of src/train.py with "
                           "python src/export.py --model X_best_model.pth.") from None
    check_flags_agree_with_record(path, record, model_type, use_cbam)
    return OnnxModel(session), {"model_record": record, "args": args}


def load_model(path, device, model_type=None, use_cbam=None):
    """(net, checkpoint) of a .pth checkpoint (run in PyTorch) or an .onnx file (run in ONNX Runtime); the checkpoint
    dict holds at least the model record and the training arguments."""
    if Path(path).suffix.lower() == ".onnx":
        return load_onnx_model(path, device, model_type, use_cbam)
    return load_trained_model(path, device, model_type, use_cbam)


def runtime_name(net):
    """What runs net, for the results CSV: pytorch, or onnxruntime-cpu / onnxruntime-cuda."""
    return net.runtime if isinstance(net, OnnxModel) else "pytorch"
