import shutil
import subprocess
import sys

import onnx
import pytest
import torch

import export
from conftest import ROOT, randomize_batchnorm_statistics
from errors import ProjectError
from models import blocks, build_model, model_record, prepare_for_inference


def fail(*args):
    raise AssertionError("a custom autograd Function ran while exporting")


@pytest.mark.slow
@pytest.mark.parametrize("model_type, use_cbam, opset", [("Unet", True, 18), ("ResNet34_Unet", True, None),
                                                         ("ResNet34_Unet", False, None)])
def test_every_model_type_exports_with_standard_operators_and_matches_pytorch(model_type, use_cbam, opset, tmp_path,
                                                                              monkeypatch):
    torch.manual_seed(0)
    model = build_model(model_type, use_cbam=use_cbam)
    randomize_batchnorm_statistics(model)
    net = prepare_for_inference(model, torch.device("cpu"))
    checkpoint = {"model_record": model_record(model_type, use_cbam, 32), "args": {"batch_size": 2}}
    path = tmp_path / "model.onnx"
    with monkeypatch.context() as patch:
        for function in (blocks._ConvTranspose2x2Function, blocks._MeanMaxFunction):
            patch.setattr(function, "apply", fail)
        export.export_onnx(net, checkpoint, path, opset)
    model = onnx.load(path)
    if opset is not None:
        assert [entry.version for entry in model.opset_import if entry.domain == ""] == [opset]
    graph = model.graph
    assert {node.domain for node in graph.node} == {""}  # the standard operators only
    assert not any(node.op_type == "BatchNormalization" for node in graph.node)
    assert [dim.dim_param for dim in graph.input[0].type.tensor_type.shape.dim] == ["batch", "", "height", "width"]
    results = export.check_parity(path, net, checkpoint["model_record"])
    assert [result["size"] for result in results] == [32, 51]
    for result in results:
        assert result["argmax_agreement"] >= 0.999 and result["max_abs_difference"] < 1e-3


def test_export_writes_the_file_beside_the_checkpoint_after_checking_it(trained, exported):
    _, model = trained
    path, written = exported
    results = written["parity"]
    assert path == written["onnx"] == model.with_suffix(".onnx") and path.is_file() and written["int8"] is None
    assert len(results) == 2 and results[0]["size"] == 32 and results[1]["size"] % 2 == 1
    assert all(result["argmax_agreement"] >= 0.999 and result["images"] > 0 for result in results)


def test_a_failed_parity_check_leaves_no_file(trained, exported, tmp_path, monkeypatch):
    _, model = trained
    monkeypatch.setattr(export, "export_onnx", lambda net, checkpoint, path, opset=None: shutil.copy(exported[0], path))
    monkeypatch.setattr(export, "compare_logits", lambda expected, actual: (3.0, 0.9))
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(ProjectError):
        export.main(export.get_args_parser().parse_args(["--model", str(model), "--out", str(out)]))
    assert list(out.parent.iterdir()) == []


def test_an_out_path_that_is_not_onnx_is_refused(trained, tmp_path):
    _, model = trained
    with pytest.raises(ProjectError):
        export.main(export.get_args_parser().parse_args(["--model", str(model), "--out", str(tmp_path / "m.pth")]))
    assert not (tmp_path / "m.pth").exists()


def test_logit_comparison_gives_the_largest_difference_and_the_argmax_agreement():
    expected = torch.tensor([[[[0.0, 1.0]], [[1.0, 0.0]]]])  # 1 x 2 classes x 1 x 2 pixels: class 1, then class 0
    actual = expected.clone()
    actual[0, 0, 0, 1] = 0.5  # the second pixel still picks class 0
    actual[0, 1, 0, 0] = -0.25  # the first pixel now picks class 0
    assert export.compare_logits(expected, actual) == (1.25, 0.5)


@pytest.mark.parametrize("opset", ["0", str(export.OPSETS[0] - 1), str(export.OPSETS[1] + 1), "eighteen"])
def test_an_opset_torch_onnx_does_not_know_exits_with_code_2(opset):
    with pytest.raises(SystemExit) as exit_info:
        export.get_args_parser().parse_args(["--model", "m.pth", "--opset", opset])
    assert exit_info.value.code == 2


def test_an_out_that_is_a_folder_is_refused_before_the_model_is_read(tmp_path, monkeypatch):
    def never_load(*args):
        raise AssertionError("the model was read")

    monkeypatch.setattr(export, "load_trained_model", never_load)
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    with pytest.raises(ProjectError, match="model.onnx"):
        export.main(export.get_args_parser().parse_args(["--model", str(tmp_path / "m.pth"), "--out", str(folder)]))


@pytest.mark.slow
def test_an_opset_the_exporter_cannot_convert_to_prints_only_the_projects_error(trained):
    _, model = trained
    out = model.parent / "opset17.onnx"
    finished = subprocess.run([sys.executable, str(ROOT / "src" / "export.py"), "--model", str(model), "--out",
                               str(out), "--opset", "17"], capture_output=True, text=True, timeout=600)
    assert finished.returncode == 2 and not out.exists()
    before_error = finished.stderr[:finished.stderr.index("error:")]
    assert "Traceback" not in before_error and "RuntimeError" not in before_error


def test_an_onnx_model_is_refused_without_int8_before_anything_is_read(exported, monkeypatch):
    def never_load(*args):
        raise AssertionError("the file was read")

    monkeypatch.setattr(export, "load_trained_model", never_load)
    monkeypatch.setattr(export.quantize, "read_onnx_metadata", never_load)
    with pytest.raises(ProjectError, match=exported[0].name):
        export.main(export.get_args_parser().parse_args(["--model", str(exported[0])]))
    with pytest.raises(ProjectError):
        export.main(export.get_args_parser().parse_args(["--model", str(exported[0]), "--int8", "--opset", "18"]))
