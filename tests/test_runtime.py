import sys
from types import SimpleNamespace

import pytest
import torch

import runtime
from conftest import foreign_onnx_file
from errors import ProjectError
from evaluate import predict

CPU = torch.device("cpu")


def test_the_onnx_file_holds_the_checkpoints_record_and_training_arguments(trained, exported):
    _, model = trained
    net, checkpoint = runtime.load_model(exported[0], CPU)
    original = torch.load(model, weights_only=True)
    assert checkpoint["model_record"] == original["model_record"]
    assert checkpoint["args"] == original["args"]
    assert runtime.runtime_name(net) == "onnxruntime-cpu"


def test_an_onnx_file_gives_the_checkpoints_predictions_through_the_same_call(trained, exported):
    _, model = trained
    onnx_net, _ = runtime.load_model(exported[0], CPU)
    torch_net, _ = runtime.load_model(model, CPU)
    assert runtime.runtime_name(torch_net) == "pytorch"
    images = torch.randn(3, 3, 40, 24).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for tta in (False, True):
            torch.testing.assert_close(predict(onnx_net, images, tta), predict(torch_net, images, tta),
                                       rtol=1e-4, atol=1e-4)


def test_flags_that_disagree_with_the_onnx_record_are_refused(exported):
    with pytest.raises(ProjectError):
        runtime.load_model(exported[0], CPU, model_type="Unet")
    with pytest.raises(ProjectError):
        runtime.load_model(exported[0], CPU, use_cbam=False)


def test_a_foreign_or_damaged_onnx_file_is_refused(tmp_path):
    damaged = tmp_path / "damaged.onnx"
    damaged.write_text("not a model")
    for path in (foreign_onnx_file(tmp_path / "identity.onnx"), damaged, tmp_path / "missing.onnx"):
        with pytest.raises(ProjectError) as error:
            runtime.load_model(path, CPU)
        assert path.name in str(error.value)


def test_without_onnxruntime_the_error_names_the_requirements_file(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ProjectError, match="requirements-onnx.txt"):
        runtime.load_model(exported[0], CPU)


def test_the_cuda_provider_is_asked_for_only_on_a_cuda_device_when_installed():
    with_cuda = SimpleNamespace(get_available_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    cpu_only = SimpleNamespace(get_available_providers=lambda: ["CPUExecutionProvider"])
    assert runtime.execution_providers(with_cuda, torch.device("cuda", 1))[0] == ("CUDAExecutionProvider",
                                                                                  {"device_id": 1})
    assert runtime.execution_providers(cpu_only, torch.device("cuda")) == ["CPUExecutionProvider"]
    assert runtime.execution_providers(with_cuda, CPU) == ["CPUExecutionProvider"]

