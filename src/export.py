"""Export a trained model to ONNX, checked against PyTorch: python src/export.py --model saved_models/X_best_model.pth

Writes X_best_model.onnx beside the checkpoint (or --out): the network as evaluation runs it (eval mode, BatchNorm
folded) in standard ONNX operators, with dynamic batch, height and width; float32 images N x 3 x H x W in,
normalised as its record says, logits N x 2 x H x W out. Its metadata ("model_record" and "args", JSON) holds the
checkpoint's model record and training arguments, so src/evaluate.py and src/inference.py --model X.onnx need
nothing else. Before the file takes its name, ONNX Runtime runs it on real images of --data_path (the bundled
sample by default) at the model's image size and at an odd size, beside PyTorch: the largest absolute logit
difference and the share of pixels whose argmax agrees are printed, and an agreement below 99.9 % at either size
is an error that leaves no file.

With --int8, also writes X_best_model_int8.onnx (see quantize.py): static INT8 quantization calibrated on
--calibration_images training images of --data_path, kept only when its Dice on the validation split of --data_path
is at most --max_dice_drop below the float model's. --model X.onnx --int8 quantizes an earlier export.

    python src/export.py --model saved_models/X_best_model.pth --int8 --data_path dataset/oxford-iiit-pet
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch.onnx import _constants as onnx_constants

import arg_types
import quantize
from data import prepare_images
from errors import ProjectError, run_cli
from files import atomic_write
from models import load_trained_model
from oxford_pet import read_image, read_split, resize_image, sample_paths
from runtime import METADATA_KEYS, RUNTIMES, errors_only, import_onnx_package, load_onnx_model

SAMPLE = Path(__file__).resolve().parents[1] / "dataset" / "oxford-iiit-pet-sample"
MIN_ARGMAX_AGREEMENT = 0.999
PARITY_IMAGES = 8
CPU = torch.device("cpu")
OPSETS = (onnx_constants.ONNX_MIN_OPSET, onnx_constants.ONNX_MAX_OPSET)  # the operator sets torch.onnx knows
# What torch.onnx and onnxscript log while converting to another operator set: a failed conversion logs the
# converter's traceback, ahead of the one-paragraph error that export_onnx raises for it.
EXPORTER_LOGGERS = ("torch.onnx", "onnxscript")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help="a checkpoint written by src/train.py (with --int8 also an .onnx file of this script)")
    parser.add_argument("--out", default=None, help="the ONNX file (default: the checkpoint's path ending in .onnx)")
    opset = arg_types.bounded_int(*OPSETS, name=f"opset between {OPSETS[0]} and {OPSETS[1]}")
    parser.add_argument("--opset", type=opset,
                        default=None, help="ONNX operator set version (default: the exporter's own)")
    parser.add_argument("--data_path", default=str(SAMPLE),
                        help="the dataset whose first test images the parity check reads, and, with --int8, whose "
                             "training images calibrate and whose validation images check the INT8 model (default: "
                             "the bundled sample)")
    add_int8_flags(parser)
    return parser


def add_int8_flags(parser):
    group = parser.add_argument_group("INT8 quantization")
    group.add_argument("--int8", action="store_true", help="also write X_int8.onnx (static INT8, see quantize.py)")
    group.add_argument("--calibration_images", type=arg_types.positive_int,
                       default=quantize.DEFAULT_CALIBRATION_IMAGES,
                       help=f"training images that calibrate the activations' ranges "
                            f"(default {quantize.DEFAULT_CALIBRATION_IMAGES})")
    group.add_argument("--calibration_method", choices=quantize.CALIBRATION_METHODS, default="minmax",
                       help="how the ranges are chosen from them (default minmax)")
    group.add_argument("--int8_activations", choices=quantize.ACTIVATION_TYPES, default="uint8",
                       help="8-bit activations, unsigned (default, U8S8) or signed (S8S8); weights are int8")
    group.add_argument("--runtime", choices=RUNTIMES, default="openvino",
                       help="what runs the INT8 file, for the accuracy check and later for src/evaluate.py and "
                            "src/inference.py (default openvino: faster; requirements-openvino.txt)")
    group.add_argument("--max_dice_drop", type=arg_types.bounded_float(0.0, 1.0, name="Dice drop between 0 and 1"),
                       default=quantize.DEFAULT_MAX_DICE_DROP,
                       help=f"largest loss of validation Dice the INT8 file may have (default "
                            f"{quantize.DEFAULT_MAX_DICE_DROP})")


def export_onnx(net, checkpoint, path, opset=None):
    """Write net (eval mode, on the CPU) to path as ONNX with dynamic batch, height and width, and the checkpoint's
    model record and training arguments as metadata."""
    onnx = import_onnx_package("onnx")
    import_onnx_package("onnxscript")  # what torch.onnx's exporter translates with
    size = checkpoint["model_record"]["image_size"]
    example = torch.zeros(2, 3, size, size)  # an example batch of 1 would fix the batch size
    with errors_only(EXPORTER_LOGGERS):
        program = torch.onnx.export(net, (example,), dynamo=True, input_names=["images"], output_names=["logits"],
                                    dynamic_shapes=({0: "batch", 2: "height", 3: "width"},), opset_version=opset,
                                    verbose=False)
    model = program.model_proto
    written = next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    if opset is not None and written != opset:
        raise ProjectError(f"--opset {opset}: the exporter could not convert the model to that operator set and "
                           f"produced version {written}; pick {written} or a later one.")
    # The exporter names the output's height "Min(height, 32*((height + 31)//32))" (the crop back to the input's
    # size after padding to the network's stride), which is the input's height; likewise the width.
    for dim, name in zip(model.graph.output[0].type.tensor_type.shape.dim, ("batch", None, "height", "width")):
        if name:
            dim.dim_param = name
    onnx.helper.set_model_props(model, {key: json.dumps(checkpoint[key]) for key in METADATA_KEYS})
    onnx.save(model, path)


def parity_images(data_path, size, count=PARITY_IMAGES):
    """The first `count` test images of data_path resized to size x size, as a uint8 N x 3 x H x W batch."""
    names = read_split(data_path, "test")[:count]
    images = np.stack([resize_image(read_image(sample_paths(data_path, name)[0]), size) for name in names])
    return torch.from_numpy(images.transpose(0, 3, 1, 2).copy())


def compare_logits(expected, actual):
    """(largest absolute difference, share of pixels whose argmax over the classes agrees) of two logit batches."""
    agreement = (expected.argmax(dim=1) == actual.argmax(dim=1)).double().mean().item()
    return (expected - actual).abs().max().item(), agreement


def check_parity(onnx_path, net, record, data_path=SAMPLE):
    """Run the ONNX file in ONNX Runtime and net in PyTorch on the same real images, at the record's image size and
    at an odd size; print the figures of each and raise ProjectError where the argmax agrees on less than 99.9 %
    of the pixels. Returns [{size, images, max_abs_difference, argmax_agreement}]."""
    onnx_net, _ = load_onnx_model(onnx_path, CPU)
    size = record["image_size"]
    results = []
    for size in (size, size // 2 * 2 + 19):  # the odd size pads to the network's stride
        images = prepare_images(parity_images(data_path, size), CPU, record["normalization"], channels_last=True)
        with torch.inference_mode():
            difference, agreement = compare_logits(net(images), onnx_net(images))
        results.append({"size": size, "images": len(images), "max_abs_difference": difference,
                        "argmax_agreement": agreement})
        print(f"{size}x{size}, {len(images)} images: largest absolute logit difference {difference:.3g}, "
              f"argmax agrees on {100 * agreement:.4f} % of the pixels")
        if not agreement >= MIN_ARGMAX_AGREEMENT:  # also false for NaN
            raise ProjectError(f"the ONNX export disagrees with PyTorch: at {size}x{size} the argmax of the two "
                               f"agrees on {100 * agreement:.4f} % of the pixels (at least "
                               f"{100 * MIN_ARGMAX_AGREEMENT:.1f} % needed; largest logit difference "
                               f"{difference:.3g}), so no file was written; try another --opset, or another "
                               f"version of onnx, onnxscript and onnxruntime.")
    return results


def export_checked(net, checkpoint, out, data_path=SAMPLE, opset=None):
    """export_onnx, then check_parity on the written file; out takes its name only when the check passes.
    Returns check_parity's figures."""
    results = []

    def write(tmp):
        export_onnx(net, checkpoint, tmp, opset)
        results.extend(check_parity(tmp, net, checkpoint["model_record"], data_path))

    atomic_write(out, write)
    return results


def export_float(args):
    """Export args.model (a checkpoint) to args.out or beside it, checked; returns (path, parity figures)."""
    out = Path(args.out) if args.out else Path(args.model).with_suffix(".onnx")
    if out.suffix.lower() != ".onnx":
        raise ProjectError(f"--out {out} must end in .onnx: that is how src/evaluate.py and src/inference.py tell an "
                           "ONNX file from a checkpoint.")
    if out.is_dir():
        raise ProjectError(f"--out {out} is an existing folder; give the path of the .onnx file to write.")
    net, checkpoint = load_trained_model(args.model, CPU)
    results = export_checked(net, checkpoint, out, args.data_path, args.opset)
    print(f"Wrote {out}")
    return out, results


def check_onnx_input(args):
    """An .onnx --model is quantized (with --int8) and nothing else: it is no checkpoint to export."""
    if not args.int8:
        raise ProjectError(f"--model {args.model} is an ONNX file already; src/export.py exports a checkpoint of "
                           "src/train.py (*_best_model.pth). To quantize this file, add --int8.")
    if args.out or args.opset:
        raise ProjectError(f"--model {args.model} is an ONNX file, so nothing is exported and --out and --opset have "
                           "nothing to apply to; the INT8 file goes beside it.")


def main(args):
    """{"onnx": the float file, "parity": its parity figures (None for an .onnx --model), "int8": the INT8 file's
    metadata (None without --int8)}."""
    if Path(args.model).suffix.lower() == ".onnx":
        check_onnx_input(args)
        out, parity = Path(args.model), None
    else:
        out, parity = export_float(args)
    metadata = None
    if args.int8:
        int8_out = quantize.int8_path(out)
        metadata = quantize.quantize_checked(out, int8_out, args.data_path, args.calibration_images,
                                             args.calibration_method, args.int8_activations, args.runtime,
                                             args.max_dice_drop)
        print(f"Wrote {int8_out}")
    return {"onnx": out, "parity": parity, "int8": metadata}


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
