import json
import sys

import pytest
import torch

from conftest import ROOT, SAMPLE
from errors import ProjectError

sys.path.insert(0, str(ROOT / "benchmarks"))
import benchmark  # noqa: E402
import model_speed  # noqa: E402


def tiny_args(tmp_path, *models):
    return benchmark.get_args_parser().parse_args([
        "--device", "cpu", "--image_size", "32", "--batch_size", "2", "--repeats", "1", "--warmup", "1",
        "--min_seconds", "0", "--data_path", str(SAMPLE), "--out", str(tmp_path / "results.json"),
        "--models", *models])


@pytest.mark.slow
def test_models_and_loaders_are_measured_and_written(tmp_path):
    results = benchmark.main(tiny_args(tmp_path, "Unet", "ResNet34_Unet", "ResNet34_Unet_nocbam"))
    assert json.loads((tmp_path / "results.json").read_text())["models"].keys() == results["models"].keys()
    assert {"device", "torch", "threads", "allocator"} <= set(results["environment"])
    assert results["matmul_peak"]["torch_mm_gflops"] > 0 and results["matmul_peak"]["conv1x1_gflops"] > 0
    record = results["models"]["ResNet34_Unet"]
    for kind in ("train", "infer_bs1", "infer_bs2"):
        assert record[f"{kind}_images_per_second"] > 0
        assert record[f"{kind}_vs_reference"] is None
    assert record["params"] == 21_890_670 and record["train_gflop_per_image"] > 0
    nocbam = results["models"]["ResNet34_Unet_nocbam"]
    assert record["train_ops"] > nocbam["train_ops"] > record["infer_ops"] > nocbam["infer_ops"] > 0
    assert results["loader"]["images"] > 0 and results["loader"]["num_workers"] == 0
    assert results["loader"]["cached_vs_report"] > 0
    headroom = results["loader"]["cached_images_per_second"] / record["train_images_per_second"]
    assert results["loader"]["cached_vs_resnet34_unet_train"] == pytest.approx(headroom)
    assert record["train_step_memory_mib"] is None  # measured on CUDA only


def test_each_fast_block_is_timed_against_its_plain_version(tmp_path):
    args = tiny_args(tmp_path)
    args.blocks, args.no_loader = True, True
    blocks = benchmark.main(args)["blocks"]
    assert len(blocks) == 3
    for figures in blocks.values():
        assert figures["plain_ms"] > 0 and figures["fast_ms"] > 0
        assert figures["speedup"] == pytest.approx(figures["plain_ms"] / figures["fast_ms"])


def test_operator_count_leaves_out_views():
    x = torch.randn(4, 3)

    def two_operators():
        torch.relu(x.view(-1)[:6].t() + 1)

    assert model_speed.dispatched_ops(two_operators) == 2


@pytest.mark.slow
def test_reference_gives_every_model_a_ratio(tmp_path):
    pytest.importorskip("segmentation_models_pytorch")
    args = tiny_args(tmp_path, "ResNet34_Unet", "DeepLabV3Plus", "HRNet", model_speed.REFERENCE, model_speed.SMP_DEEPLAB)
    args.no_loader = True
    results = benchmark.main(args)
    assert results["models"][model_speed.REFERENCE]["train_vs_reference"] == 1.0
    for name in ("ResNet34_Unet", "DeepLabV3Plus", "HRNet", model_speed.SMP_DEEPLAB):
        assert results["models"][name]["infer_bs1_vs_reference"] > 0
    assert results["models"][model_speed.SMP_DEEPLAB]["params"] == 22_437_714
    assert "loader" not in results


@pytest.mark.slow
def test_onnx_runtimes_float_and_int8_are_measured_against_pytorch_with_the_same_threads(tmp_path):
    args = tiny_args(tmp_path, "Unet")
    args.onnx, args.int8, args.no_loader = True, True, True
    args.openvino = False  # OpenVINO in the test process made later tests crash (see test_quantize.py)
    results = benchmark.main(args)
    assert "models" not in results  # --onnx measures inference alone
    runtimes = ["pytorch", "onnxruntime", "onnxruntime-int8"] + ["openvino", "openvino-int8"] * args.openvino
    assert results["onnx"]["runtimes"] == runtimes and results["onnx"]["activations"] == "uint8"
    assert set(results["onnx"]["threads"]) == set(runtimes)
    assert len(set(results["onnx"]["threads"].values())) == 1
    record = results["onnx"]["models"]["Unet"]
    for runtime in runtimes[1:]:
        for batch_size in (1, 2):
            rate, pytorch = (record[f"{name}_bs{batch_size}_images_per_second"] for name in (runtime, "pytorch"))
            assert record[f"{runtime}_vs_pytorch_bs{batch_size}"] == pytest.approx(rate / pytorch)


def test_int8_and_openvino_need_onnx(tmp_path):
    for flag in ("int8", "openvino"):
        args = tiny_args(tmp_path, "Unet")
        setattr(args, flag, True)
        with pytest.raises(ProjectError):
            benchmark.main(args)


def test_onnx_comparison_is_in_float32_eager_mode(tmp_path):
    args = tiny_args(tmp_path, "Unet")
    args.onnx, args.amp, args.no_loader = True, True, True
    with pytest.raises(ProjectError):
        benchmark.main(args)


@pytest.mark.parametrize("argv", [["--image_size", "8"], ["--image_size", "0"], ["-b", "0"], ["--repeats", "0"],
                                  ["--warmup", "0"], ["--min_seconds", "-1"], ["--min_seconds", "nan"],
                                  ["--num_workers", "-1"]])
def test_bad_numbers_exit_with_code_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.get_args_parser().parse_args(argv)
    assert exit_info.value.code == 2


def test_an_out_that_is_a_folder_is_refused_before_measuring(tmp_path, monkeypatch):
    def never_measure(*args):
        raise AssertionError("measured")

    monkeypatch.setattr(benchmark, "measure", never_measure)
    args = tiny_args(tmp_path, "Unet")
    args.out, args.no_loader = str(tmp_path), True
    with pytest.raises(ProjectError):
        benchmark.main(args)
