import csv
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

import export
import inference
import quantize
import runtime
from conftest import ROOT, SAMPLE, foreign_onnx_file
from errors import ProjectError
from models import model_record
from oxford_pet import read_split

CPU = torch.device("cpu")


def int8_args(model, *extra):
    return export.get_args_parser().parse_args(["--model", str(model), "--int8", "--runtime", "onnxruntime",
                                                "--calibration_images", "8", "--data_path", str(SAMPLE), *extra])


@pytest.fixture(scope="module")
def quantized(exported):
    """(INT8 file, export.main's figures) of the session's exported model, calibrated on 8 sample images; the check
    may not refuse it (the tiny model's Dice says nothing about quantization)."""
    written = export.main(int8_args(exported[0], "--max_dice_drop", "1"))
    return quantize.int8_path(exported[0]), written


def producers(model):
    return {output: node for node in model.graph.node for output in node.output}


def test_the_int8_file_has_8_bit_convolution_weights_and_keeps_the_float_operators_in_float(quantized):
    path, written = quantized
    assert path.is_file() and path.name.endswith("_int8.onnx")
    model = onnx.load(path)
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    made_by = producers(model)
    convolutions = [node for node in model.graph.node if node.op_type == "Conv"]
    assert convolutions
    for node in convolutions:
        weight = made_by[node.input[1]]
        assert weight.op_type == "DequantizeLinear"
        weights, scales = (initializers[name] for name in weight.input[:2])
        assert weights.data_type == onnx.TensorProto.INT8 and list(scales.dims) == weights.dims[:1]  # per channel
    kept = {kind: [node for node in model.graph.node if node.op_type == kind] for kind in quantize.FLOAT_OPERATORS}
    assert all(kept.values())
    for node in kept["ConvTranspose"]:
        assert initializers[node.input[1]].data_type == onnx.TensorProto.FLOAT
    quantized_inputs = {node.input[0] for node in model.graph.node if node.op_type == "QuantizeLinear"}
    assert not {node.output[0] for node in kept["Sigmoid"]} & quantized_inputs  # CBAM's gates stay float
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            assert initializers[node.input[2]].data_type == onnx.TensorProto.UINT8  # U8S8


def test_the_record_round_trips_with_the_calibration_and_the_check(quantized, exported, trained):
    path, written = quantized
    net, metadata = runtime.load_model(path, CPU)
    original = torch.load(trained[1], weights_only=True)
    assert metadata["model_record"] == original["model_record"] and metadata["args"] == original["args"]
    record = metadata["quantization"]
    assert record == written["int8"]["quantization"]
    assert record["calibration_images"] == 8 and record["calibration_method"] == "minmax"
    assert record["calibration_split"] == "train" and record["activations"] == "uint8"
    assert record["runtime"] == "onnxruntime" and runtime.runtime_name(net) == "onnxruntime-cpu-int8"
    check = record["check"]
    assert check["split"] == "valid" and check["images"] == len(read_split(SAMPLE, "valid"))
    assert 0 <= check["argmax_agreement"] <= 1 and 0 <= check["int8_dice"] <= 1
    assert written["parity"] is None and written["onnx"] == exported[0]


def test_calibration_reads_training_images_only_spread_over_the_split():
    train = read_split(SAMPLE, "train")
    names = quantize.calibration_names(SAMPLE, 8)
    assert len(set(names)) == 8 and set(names) <= set(train)
    assert not set(names) & (set(read_split(SAMPLE, "valid")) | set(read_split(SAMPLE, "test")))
    assert names[0] == train[0] and names[-1] in train[-len(train) // 8:]
    assert quantize.calibration_names(SAMPLE, 10_000) == train


@pytest.mark.parametrize("count, chunk", [(300, 15), (7, 7), (17, 1), (32, 16)])
def test_calibration_chunks_divide_the_images(count, chunk):
    assert quantize.chunk_size(count) == chunk


def brightness_model(path):
    """An ONNX file with this project's record whose network calls a pixel pet where it is brighter than the
    dataset's mean: a 1x1 convolution, logits (0, mean of the normalised channels)."""
    weight = np.zeros((2, 3, 1, 1), np.float32)
    weight[1] = 1 / 3
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Conv", ["images", "weight"], ["logits"])], "brightness",
        [onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 2, "height", "width"])],
        [onnx.numpy_helper.from_array(weight, "weight")])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    quantize.write_metadata(path, {"model_record": model_record("ResNet34_Unet", True, 32), "args": {}})
    return path


def test_the_check_refuses_an_int8_file_calibrated_on_black_images(tmp_path, monkeypatch):
    float_path = brightness_model(tmp_path / "model.onnx")
    monkeypatch.setattr(quantize, "read_image", lambda path: np.zeros((40, 30, 3), np.uint8))  # calibration only
    with pytest.raises(ProjectError):
        export.main(int8_args(float_path))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.onnx"]


def test_images_run_on_the_int8_file(quantized, tmp_path):
    names = read_split(SAMPLE, "test")[:2]
    args = inference.get_args_parser().parse_args([
        "--model", str(quantized[0]), "--images", *(str(SAMPLE / "images" / f"{name}.jpg") for name in names),
        "--output_dir", str(tmp_path / "out"), "--device", "cpu"])
    inference.main(args)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted(
        f"{name}_{kind}.png" for name in names for kind in ("mask", "overlay"))


@pytest.mark.slow
def test_the_results_csv_names_the_int8_runtime(quantized, tmp_path):
    args = inference.get_args_parser().parse_args([
        "--model", str(quantized[0]), "--data_path", str(SAMPLE), "--log_dir", str(tmp_path), "--device", "cpu"])
    inference.main(args)
    with open(tmp_path / "inference_result.csv", newline="") as f:
        assert [row["runtime"] for row in csv.DictReader(f)] == ["onnxruntime-cpu-int8"]


def test_without_onnxruntime_quantizing_is_a_one_paragraph_error(exported, tmp_path, monkeypatch):
    for name in ("onnxruntime", "onnxruntime.quantization"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail
    with pytest.raises(ProjectError, match="requirements-onnx.txt"):
        quantize.quantize_onnx(exported[0], tmp_path / "m_int8.onnx", SAMPLE, 8)
    assert not (tmp_path / "m_int8.onnx").exists()


def test_only_a_float_onnx_file_of_this_project_is_quantized(quantized, tmp_path):
    damaged = tmp_path / "damaged.onnx"
    damaged.write_text("not a model")
    for path in (damaged, foreign_onnx_file(tmp_path / "identity.onnx"), quantized[0], tmp_path / "missing.onnx"):
        with pytest.raises(ProjectError) as error:
            export.main(int8_args(path))
        assert path.name in str(error.value)
        assert not quantize.int8_path(path).exists()


def in_fresh_process(code):
    """Run Python code with src/ on the path in a new interpreter: OpenVINO's threads, once started in the test
    process, made later tests of the suite crash (a segmentation fault), so it never runs in this one."""
    pytest.importorskip("openvino")
    finished = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r})\n{code}"],
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr


def test_an_int8_file_recorded_for_openvino_runs_there_in_float32_where_it_is_float(exported, quantized, tmp_path):
    path = tmp_path / "model_int8.onnx"
    shutil.copy(quantized[0], path)
    metadata = runtime.read_onnx_metadata(path)
    metadata["quantization"]["runtime"] = "openvino"
    quantize.write_metadata(path, metadata)
    in_fresh_process(f"""
import torch, runtime
images = torch.randn(2, 3, 32, 48)
with torch.inference_mode():
    float_net = runtime.onnx_network({str(exported[0])!r}, torch.device("cpu"), "openvino")
    reference = runtime.onnx_network({str(exported[0])!r}, torch.device("cpu"))
    torch.testing.assert_close(float_net(images), reference(images), rtol=1e-4, atol=1e-4)  # bfloat16: about 1e-2
    net, _ = runtime.load_model({str(path)!r}, torch.device("cpu"))
    assert runtime.runtime_name(net) == "openvino-cpu-int8"
    logits = net(images)
    assert logits.shape == (2, 2, 32, 48) and torch.isfinite(logits).all()
""")


def test_without_openvino_running_there_is_a_one_paragraph_error(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ProjectError, match="requirements-openvino.txt"):
        runtime.onnx_network(exported[0], CPU, "openvino")


def test_a_file_openvino_cannot_read_is_a_one_paragraph_error(tmp_path):
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(b"\x08\x07garbage")
    in_fresh_process(f"""
import torch, runtime
from errors import ProjectError
try:
    runtime.onnx_network({str(damaged)!r}, torch.device("cpu"), "openvino")
except ProjectError as error:
    assert "damaged.onnx" in str(error)
else:
    raise AssertionError("no ProjectError")
""")
