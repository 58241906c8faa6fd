"""Inference of this project's models exported to ONNX, in ONNX Runtime and (with --openvino) OpenVINO, float32
and (with --int8) INT8, against eager PyTorch as src/evaluate.py runs them, all with the same number of threads."""
import tempfile
from pathlib import Path

import torch

from model_speed import build_candidate, inference_step
from timing import calibrate, interleaved_rates
from export import export_onnx  # noqa: E402
from models import model_record, prepare_for_inference  # noqa: E402
from quantize import quantize_onnx  # noqa: E402
from runtime import onnx_network  # noqa: E402

CPU = torch.device("cpu")
# The INT8 files are calibrated on this many training images of --data_path: the ranges set the scales, not the
# amount of arithmetic, so a few images give the speed of any calibration.
CALIBRATION_IMAGES = 8


def runtimes(args):
    """The runtimes measured: PyTorch and ONNX Runtime, then OpenVINO with --openvino, each float32 and with --int8
    INT8 too."""
    names = ["onnxruntime", "openvino"] if args.openvino else ["onnxruntime"]
    return ["pytorch"] + [f"{name}{suffix}" for name in names for suffix in ("", "-int8")[: 1 + args.int8]]


def onnx_networks(name, args, device, folder):
    """{runtime: net} of one of this project's models (random weights): eager PyTorch, and its ONNX export
    (src/export.py's, without the parity check) and INT8 file (quantize.py's, without the accuracy check)."""
    net = prepare_for_inference(build_candidate(name), CPU)
    record = model_record(name.removesuffix("_nocbam"), not name.endswith("_nocbam"), args.image_size)
    float_path, int8_path = Path(folder) / f"{name}.onnx", Path(folder) / f"{name}_int8.onnx"
    export_onnx(net, {"model_record": record, "args": {}}, float_path)
    if args.int8:
        quantize_onnx(float_path, int8_path, args.data_path, CALIBRATION_IMAGES, activations=args.int8_activations)
    nets = {"pytorch": net.to(device)}
    for runtime in runtimes(args)[1:]:
        engine, _, int8 = runtime.partition("-")
        nets[runtime] = onnx_network(int8_path if int8 else float_path, device, engine, int8=bool(int8))
    return nets


def threads(nets):
    """{runtime: threads it computes with}."""
    counts = {}
    for runtime, net in nets.items():
        if runtime == "pytorch":
            counts[runtime] = torch.get_num_threads()
        elif runtime.startswith("onnxruntime"):
            counts[runtime] = net.session.get_session_options().intra_op_num_threads
        else:
            counts[runtime] = int(net.compiled.get_property("INFERENCE_NUM_THREADS"))
    return counts


def measure_onnx(names, args, device):
    """{"runtimes", "threads", "activations", "models": {model: {<runtime>_bs{n}_images_per_second,
    <runtime>_vs_pytorch_bs{n}}}} for this project's models among names, every step timed in one interleaved
    loop."""
    names = [name for name in names if not name.startswith("smp_")]
    sizes = list(dict.fromkeys((1, args.batch_size)))
    tasks, counts = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            print(f"exporting{' and quantizing' * args.int8} {name}, warming up ...", flush=True)
            nets = onnx_networks(name, args, device, folder)
            counts = threads(nets)
            for batch_size in sizes:
                for runtime, net in nets.items():
                    step = inference_step(net, batch_size, torch.channels_last, args, device)
                    tasks[(name, runtime, batch_size)] = (step, calibrate(step, device, args.warmup, args.min_seconds),
                                                          batch_size)
        rates = interleaved_rates(tasks, device, args.repeats)
    records = {name: {} for name in names}
    for (name, runtime, batch_size), rate in rates.items():
        records[name][f"{runtime}_bs{batch_size}_images_per_second"] = rate
    for record in records.values():
        for runtime in runtimes(args):
            for n in sizes:
                record[f"{runtime}_vs_pytorch_bs{n}"] = (record[f"{runtime}_bs{n}_images_per_second"]
                                                         / record[f"pytorch_bs{n}_images_per_second"])
    return {"runtimes": runtimes(args), "threads": counts, "activations": args.int8_activations if args.int8 else None,
            "models": records}


def onnx_table(onnx, batch_size):
    sizes = list(dict.fromkeys((1, batch_size)))
    others = onnx["runtimes"][1:]
    threads = ", ".join(f"{runtime} {count}" for runtime, count in onnx["threads"].items())
    int8 = f"; INT8: {onnx['activations']} activations, int8 per-channel weights" if onnx["activations"] else ""
    lines = [f"threads: {threads}{int8}", "",
             "| model | " + " | ".join(f"PyTorch bs{n} img/s | " + " | ".join(f"{runtime} bs{n} img/s | vs PyTorch"
                                                                             for runtime in others) for n in sizes)
             + " |", "|---" * (1 + len(sizes) * (1 + 2 * len(others))) + "|"]
    for name, r in onnx["models"].items():
        cells = [f"{r[f'pytorch_bs{n}_images_per_second']:.2f} | " + " | ".join(
            f"{r[f'{runtime}_bs{n}_images_per_second']:.2f} | {r[f'{runtime}_vs_pytorch_bs{n}']:.2f}x"
            for runtime in others) for n in sizes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines
