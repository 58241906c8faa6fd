"""Speed of this project's networks and data pipeline, with segmentation_models_pytorch's Unet as the reference.

    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184 \\
        python benchmarks/benchmark.py --device cpu --channels_last
    python benchmarks/benchmark.py --device cuda --amp --channels_last --data_path dataset/oxford-iiit-pet
    python benchmarks/benchmark.py --onnx --no_loader --models Unet ResNet34_Unet ResNet34_Unet_nocbam
    OMP_NUM_THREADS=1 python benchmarks/benchmark.py --onnx --int8 --openvino --no_loader

Everything runs in one process and the repetitions are interleaved (every model, then every model again), so a
change in the machine's load touches all of them alike and the ratios stay fair. Figures are medians over
--repeats. Training step: forward, cross-entropy, backward and an Adam step on a fixed random batch. The
--amp, --channels_last and --compile flags apply to every model, the reference included (with --channels_last,
smp_Unet_resnet34_nchw is the reference in its default NCHW layout). smp_DeepLabV3Plus_resnet34 is smp's
DeepLabV3Plus("resnet34"), to put beside this project's DeepLabV3Plus. --onnx measures inference alone: each of
this project's models in ONNX Runtime against eager PyTorch as src/evaluate.py runs it (BatchNorm folded,
channels_last, inference mode, float32), at batch 1 and at --batch_size; --int8 adds each model's INT8 file
(src/quantize.py), --openvino the same files in OpenVINO, every runtime with PyTorch's number of threads.
"""
import argparse
import os
from pathlib import Path

from timing import ROOT, environment
import arg_types  # noqa: E402
import cli  # noqa: E402
from block_speed import blocks_table, measure_blocks  # noqa: E402
from data import default_num_workers  # noqa: E402
from device import choose_device  # noqa: E402
from errors import ProjectError, run_cli  # noqa: E402
from files import save_json  # noqa: E402
from loader_speed import loader_table, measure_loaders  # noqa: E402
from model_speed import MODELS, REFERENCE_NCHW, available_models, measure, model_table  # noqa: E402
from onnx_speed import measure_onnx, onnx_table  # noqa: E402
from quantize import ACTIVATION_TYPES  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_device_flags(parser)
    parser.add_argument("--image_size", type=arg_types.image_size_int, default=256)
    parser.add_argument("--batch_size", "-b", type=arg_types.positive_int, default=8)
    parser.add_argument("--amp", action="store_true", help="autocast (bf16 where supported, else fp16)")
    parser.add_argument("--channels_last", action="store_true", help="channels_last models and inputs")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model")
    parser.add_argument("--models", nargs="*", choices=MODELS, default=None,
                        help=f"default: all (smp_* only when segmentation_models_pytorch is installed, "
                             f"{REFERENCE_NCHW} only with --channels_last); "
                             "--models with no name measures no model")
    parser.add_argument("--repeats", type=arg_types.positive_int, default=5,
                        help="timed repetitions; figures are medians")
    parser.add_argument("--warmup", type=arg_types.positive_int, default=2,
                        help="untimed steps of each kind before timing")
    parser.add_argument("--min_seconds", type=arg_types.non_negative_float, default=1.0,
                        help="each repetition repeats a step until it lasts about this long")
    parser.add_argument("--data_path", default=str(ROOT / "dataset" / "oxford-iiit-pet-sample"),
                        help="a dataset folder whose train split the loaders read")
    parser.add_argument("--no_loader", action="store_true", help="skip the data loader comparison")
    parser.add_argument("--blocks", action="store_true",
                        help="also time each fast layer of src/models/blocks.py against its plain PyTorch version")
    parser.add_argument("--onnx", action="store_true",
                        help="inference only: ONNX Runtime against eager PyTorch for this project's models in --models "
                             "(float32; not with --amp or --compile)")
    parser.add_argument("--int8", action="store_true",
                        help="with --onnx: also each model's INT8 file (src/quantize.py, calibrated on a few training "
                             "images of --data_path) in the same runtimes")
    parser.add_argument("--int8_activations", choices=ACTIVATION_TYPES, default="uint8",
                        help="with --int8: unsigned (U8S8, default) or signed (S8S8) 8-bit activations")
    parser.add_argument("--openvino", action="store_true",
                        help="with --onnx: also OpenVINO (requirements-openvino.txt) beside ONNX Runtime")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    return parser


def markdown(results, args):
    env, peak = results["environment"], results.get("matmul_peak")
    flags = " ".join(f"--{flag}" for flag in ("amp", "channels_last", "compile", "onnx", "int8", "openvino")
                     if getattr(args, flag))
    lines = [f"{env['device']}; torch {env['torch']}, {env['threads']} threads, allocator {env['allocator']}, "
             f"load average {env['load_average'][0]:.2f} at the start, {env['load_average_at_end'][0]:.2f} at the end",
             f"{args.image_size}x{args.image_size}, batch {args.batch_size}, flags: {flags or 'none'}; "
             f"medians of {args.repeats}"
             + (f"; matmul peak ({peak['dtype']}, {peak['size']}^2): torch.mm {peak['torch_mm_gflops']:.0f} GFLOP/s, "
                f"as a 1x1 convolution {peak['conv1x1_gflops']:.0f} GFLOP/s" if peak else "")]
    if results.get("models"):
        lines += ["", *model_table(results["models"], args.batch_size)]
    if results.get("onnx", {}).get("models"):
        lines += ["", *onnx_table(results["onnx"], args.batch_size)]
    if results.get("blocks"):
        lines += ["", *blocks_table(results["blocks"])]
    if results.get("loader"):
        lines += ["", *loader_table(results["loader"], args.image_size)]
    return "\n".join(lines)


def main(args):
    if args.onnx and (args.amp or args.compile):
        raise ProjectError("--onnx compares float32 eager PyTorch with ONNX Runtime; leave out --amp and --compile.")
    if (args.int8 or args.openvino) and not args.onnx:
        raise ProjectError("--int8 and --openvino add runtimes to the --onnx comparison; add --onnx.")
    if Path(args.out).is_dir():  # found now rather than after minutes of measuring
        raise ProjectError(f"--out {args.out} is an existing folder; give the path of the JSON file to write.")
    device = choose_device(args.device)
    names = available_models(args.models, args.channels_last)
    results = {"environment": environment(device), "args": vars(args)}
    if not args.no_loader:
        num_workers = default_num_workers(device) if args.num_workers is None else args.num_workers
        results["loader"] = measure_loaders(args, num_workers)
    if args.onnx:
        results["onnx"] = measure_onnx(names, args, device)
    else:
        results["matmul_peak"], results["models"] = measure(names, args, device)
    if args.blocks:
        results["blocks"] = measure_blocks(args, device)
    if results.get("loader") and "ResNet34_Unet" in results.get("models", {}):
        train_rate = results["models"]["ResNet34_Unet"]["train_images_per_second"]
        results["loader"]["resnet34_unet_train_images_per_second"] = train_rate
        results["loader"]["cached_vs_resnet34_unet_train"] = results["loader"]["cached_images_per_second"] / train_rate
    results["environment"]["load_average_at_end"] = list(os.getloadavg())
    save_json(results, args.out)
    print(markdown(results, args))
    return results


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
