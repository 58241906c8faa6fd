"""A trained model as the scripts run it: a .pth checkpoint in PyTorch, or an .onnx file of src/export.py in ONNX
Runtime (an INT8 file of export.py --int8 in the runtime its record names, ONNX Runtime or OpenVINO), all behind one
call, net(images) -> logits, so that evaluation and inference do not care which."""
import importlib
import json
import logging
from contextlib import contextmanager
from pathlib import Path

import torch

from errors import ProjectError
from models import check_flags_agree_with_record, load_trained_model

# The metadata_props of an exported file, each a JSON string: the checkpoint's model record and training arguments;
# an INT8 file adds QUANTIZATION_KEY: how it was quantized and calibrated, its accuracy check, and its runtime.
METADATA_KEYS = ("model_record", "args")
QUANTIZATION_KEY = "quantization"
RUNTIMES = ("onnxruntime", "openvino")


def import_onnx_package(name):
    """Import onnx, onnxscript, onnxruntime or openvino, or say which file lists them."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if name == "openvino":
            raise ProjectError("the Python package openvino is not installed; running an ONNX file in OpenVINO "
                               "needs it: pip install -r requirements-openvino.txt (or choose --runtime "
                               "onnxruntime).") from None
        raise ProjectError(f"the Python package {name} is not installed; ONNX export and ONNX Runtime inference need "
                           "the packages of requirements-onnx.txt: pip install -r requirements-onnx.txt") from None


@contextmanager
def errors_only(names):
    """Within it, the named loggers ("" is the root logger) pass on errors only: the ONNX tools log warnings that
    users cannot act on."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class OnnxModel(torch.nn.Module):
    """An ONNX Runtime session with a PyTorch network's call: float32 N x 3 x H x W images in, logits out, on the
    images' device (both pass through host memory, whatever the provider). A module without parameters, so that
    evaluation can switch its mode as it does a network's."""

    def __init__(self, session, int8=False):
        super().__init__()
        self.session = session
        self.input_name = session.get_inputs()[0].name
        provider = session.get_providers()[0].removesuffix("ExecutionProvider").lower()
        self.runtime = f"onnxruntime-{provider}" + "-int8" * int8

    def forward(self, images):
        (logits,) = self.session.run(None, {self.input_name: images.float().contiguous().cpu().numpy()})
        return torch.from_numpy(logits).to(images.device)


class OpenVinoModel(torch.nn.Module):
    """An ONNX file compiled by OpenVINO for the CPU, with OnnxModel's call. The float operators run in float32
    (OpenVINO would otherwise pick bfloat16 on CPUs that have it, which changes the predictions)."""

    def __init__(self, path, int8=False):
        super().__init__()
        openvino = import_onnx_package("openvino")
        core = openvino.Core()
        config = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": "f32",
                  "PERFORMANCE_HINT": "LATENCY"}
        try:
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except RuntimeError as error:  # what OpenVINO raises for a model it cannot read or compile
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ProjectError(f"--model {path} could not be read by OpenVINO ({reason}).") from None
        self.request = self.compiled.create_infer_request()
        self.runtime = "openvino-cpu" + "-int8" * int8

    def forward(self, images):
        logits = self.request.infer({0: images.float().contiguous().cpu().numpy()})[0]
        return torch.from_numpy(logits.copy()).to(images.device)


def execution_providers(onnxruntime, device):
    """ONNX Runtime's CUDA provider for a CUDA device when the installed ONNX Runtime has it, else the CPU's."""
    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def read_onnx_metadata(path):
    """{"model_record", "args"[, "quantization"]} of a file written by src/export.py, from its metadata_props."""
    onnx = import_onnx_package("onnx")
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"--model {path}: no such file.")
    try:
        model = onnx.load(str(path), load_external_data=False)
    # onnx reports a damaged or foreign file with protobuf's exceptions, which it does not export.
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ProjectError(f"--model {path} could not be read as an ONNX model ({reason}).") from None
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    keys = [*METADATA_KEYS, *[QUANTIZATION_KEY] * (QUANTIZATION_KEY in metadata)]
    try:
        return {key: json.loads(metadata[key]) for key in keys}
    except (KeyError, ValueError):
        raise ProjectError(f"--model {path} is an ONNX model but not one of this project's: its metadata has no model "
                           "record, so nothing says how to feed it; export a checkpoint of src/train.py with "
                           "python src/export.py --model X_best_model.pth.") from None


def onnxruntime_session(path, device):
    """An ONNX Runtime session of path with as many threads as PyTorch's operators use."""
    onnxruntime = import_onnx_package("onnxruntime")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=execution_providers(onnxruntime, device))
    # ONNX Runtime reports a damaged or foreign file with several exception types of its own.
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ProjectError(f"--model {path} could not be read as an ONNX model ({reason}).") from None


def onnx_network(path, device, runtime="onnxruntime", int8=False):
    """OnnxModel (ONNX Runtime) or OpenVinoModel (OpenVINO, CPU only) of an ONNX file."""
    if runtime == "openvino":
        if device.type != "cpu":
            raise ProjectError(f"--model {path} runs in OpenVINO, which this project runs on the CPU only; use "
                               "--device cpu.")
        return OpenVinoModel(path, int8)
    return OnnxModel(onnxruntime_session(path, device), int8)


def load_onnx_model(path, device, model_type=None, use_cbam=None):
    """(net, {"model_record", "args"[, "quantization"]}) of a file written by src/export.py, run in ONNX Runtime, or,
    for an INT8 file, in the runtime its record names; model_type/use_cbam, when given, must agree with its record."""
    metadata = read_onnx_metadata(path)
    check_flags_agree_with_record(path, metadata["model_record"], model_type, use_cbam)
    quantization = metadata.get(QUANTIZATION_KEY)
    runtime = quantization["runtime"] if quantization else "onnxruntime"
    return onnx_network(path, device, runtime, int8=quantization is not None), metadata


def load_model(path, device, model_type=None, use_cbam=None):
    """(net, checkpoint) of a .pth checkpoint (run in PyTorch) or an .onnx file (run in ONNX Runtime); the checkpoint
    dict holds at least the model record and the training arguments."""
    if Path(path).suffix.lower() == ".onnx":
        return load_onnx_model(path, device, model_type, use_cbam)
    return load_trained_model(path, device, model_type, use_cbam)


def runtime_name(net):
    """What runs net, for the results CSV: pytorch, onnxruntime-cpu / onnxruntime-cuda, openvino-cpu, with -int8
    after it for an INT8 file."""
    return net.runtime if isinstance(net, (OnnxModel, OpenVinoModel)) else "pytorch"
