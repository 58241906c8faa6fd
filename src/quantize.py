"""Static INT8 post-training quantization of an exported ONNX model, and the accuracy check it must pass.

ONNX Runtime's tools do the work: quant_pre_process (ONNX shape inference and graph optimisation), then
quantize_static in the QDQ format, with 8-bit signed weights per output channel and 8-bit activations (unsigned by
default: U8S8 ran about twice as fast as the float model on a VNNI CPU, S8S8 no faster than it; see BENCHMARKS.md),
their ranges calibrated on training images only. The INT8 file keeps the float file's record and adds a
"quantization" record: format, calibration method and images, the operators left in float, the runtime it was
checked in, and that check's figures (argmax agreement and Dice of both models on the validation split).
"""
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from data import build_loader, prepare_batch
from errors import ProjectError
from files import atomic_write
from metrics import dice_score
from oxford_pet import load_dataset, read_image, read_split, resize_image, sample_paths
from runtime import QUANTIZATION_KEY, errors_only, import_onnx_package, onnx_network, read_onnx_metadata

CPU = torch.device("cpu")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
ACTIVATION_TYPES = ("uint8", "int8")
DEFAULT_CALIBRATION_IMAGES = 300
DEFAULT_MAX_DICE_DROP = 0.005
CALIBRATION_CHUNK = 16  # images whose activations are held at once; the histogram methods keep every tensor
GATE_BATCH = 8
ROOT_LOGGER = ("",)  # where ONNX Runtime's quantizer logs
# Left in float on purpose. ConvTranspose: ONNX Runtime has no quantized kernel for it, so QDQ around it only adds
# conversions. Sigmoid and Mul: CBAM's gates, a [0, 1] attention map times a feature map; in 8 bits the product
# loses the small gate values, and keeping them in float cost no measured speed (BENCHMARKS.md).
FLOAT_OPERATORS = ("ConvTranspose", "Sigmoid", "Mul")


def int8_path(float_path):
    """Where the INT8 file of X.onnx goes: X_int8.onnx beside it."""
    float_path = Path(float_path)
    return float_path.with_name(f"{float_path.stem}_int8.onnx")


def calibration_names(data_path, count):
    """`count` training images spread evenly over the train split's list (all of it when it is shorter)."""
    names = read_split(data_path, "train")
    if count >= len(names):
        return names
    return [names[index * len(names) // count] for index in range(count)]


def normalized_image(data_path, name, size, normalization):
    """One image of the dataset at size x size, normalised as the model's record says: float32 1 x 3 x H x W."""
    image = resize_image(read_image(sample_paths(data_path, name)[0]), size).transpose(2, 0, 1)[None]
    mean, std = (np.array(normalization[key], np.float32).reshape(1, 3, 1, 1) for key in ("mean", "std"))
    return ((image.astype(np.float32) / 255 - mean) / std).astype(np.float32)


def calibration_reader(data_path, names, size, normalization):
    """An ONNX Runtime CalibrationDataReader of the named images, one per call, with the __len__ and set_range that
    quantize_static's CalibStridedMinMax uses to calibrate a chunk at a time (any method, despite its name)."""
    quantization = import_onnx_package("onnxruntime.quantization")

    class CalibrationImages(quantization.CalibrationDataReader):
        def __init__(self):
            self.start, self.end = 0, len(names)

        def __len__(self):
            return len(names)

        def set_range(self, start_index, end_index):
            self.start, self.end = start_index, end_index

        def get_next(self):
            if self.start >= self.end:
                return None
            self.start += 1
            return {"images": normalized_image(data_path, names[self.start - 1], size, normalization)}

    return CalibrationImages()


def chunk_size(count):
    """The largest number of images up to CALIBRATION_CHUNK that divides count (quantize_static needs that)."""
    return max(size for size in range(1, min(count, CALIBRATION_CHUNK) + 1) if count % size == 0)


def float_nodes(model):
    """Names of the nodes whose operator type is in FLOAT_OPERATORS."""
    return [node.name for node in model.graph.node if node.op_type in FLOAT_OPERATORS]


def quantize_onnx(float_path, out, data_path, count=DEFAULT_CALIBRATION_IMAGES, method="minmax",
                  activations="uint8", runtime="onnxruntime"):
    """Write the INT8 model of a float file of src/export.py to out, calibrated on `count` training images of
    data_path at the record's image size; its record is the float file's plus a "quantization" record. Returns
    the metadata."""
    onnx = import_onnx_package("onnx")
    quantization = import_onnx_package("onnxruntime.quantization")
    metadata = read_onnx_metadata(float_path)
    if QUANTIZATION_KEY in metadata:
        raise ProjectError(f"--model {float_path} is already an INT8 file; quantize the float file of src/export.py.")
    record = metadata["model_record"]
    names = calibration_names(data_path, count)
    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        # Symbolic shape inference (for transformers) fails on the padding to the network's stride; ONNX's own shape
        # inference and the graph optimisation still run.
        quantization.quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        activation_type = quantization.QuantType.QUInt8 if activations == "uint8" else quantization.QuantType.QInt8
        with errors_only(ROOT_LOGGER):  # the quantizer warns about each tensor it leaves in float
            quantization.quantize_static(
                str(prepared), str(out), calibration_reader(data_path, names, record["image_size"],
                                                            record["normalization"]),
                quant_format=quantization.QuantFormat.QDQ, per_channel=True, activation_type=activation_type,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=getattr(quantization.CalibrationMethod, calibration_method_name(method)),
                nodes_to_exclude=float_nodes(onnx.load(str(prepared))),
                extra_options={"CalibStridedMinMax": chunk_size(len(names))})
    metadata[QUANTIZATION_KEY] = {
        "format": "QDQ", "weights": "int8, per output channel", "activations": activations,
        "calibration_method": method, "calibration_images": len(names), "calibration_split": "train",
        "calibration_data": str(Path(data_path).resolve()), "float_operators": list(FLOAT_OPERATORS),
        "runtime": runtime}
    write_metadata(out, metadata)
    return metadata


def calibration_method_name(method):
    """ONNX Runtime's CalibrationMethod member of a --calibration_method value."""
    return {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}[method]


def write_metadata(path, metadata):
    """Replace an ONNX file's metadata_props with metadata's entries, each as JSON."""
    onnx = import_onnx_package("onnx")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {key: json.dumps(value) for key, value in metadata.items()})
    onnx.save(model, str(path))


def compare_on_held_out(float_net, int8_net, data_path, record):
    """{split, images, argmax_agreement, float_dice, int8_dice} of two networks on the validation split of
    data_path at the record's image size: the share of pixels whose argmax agrees, and each one's mean Dice."""
    dataset = load_dataset(data_path, "valid", None, record["image_size"], download=False)
    agreeing = pixels = 0
    dice = {"float": [], "int8": []}
    for batch in build_loader(dataset, GATE_BATCH, 0, CPU):
        images, masks = prepare_batch(batch, CPU, record["normalization"], channels_last=True)
        with torch.inference_mode():
            logits = {"float": float_net(images), "int8": int8_net(images)}
        agreeing += (logits["float"].argmax(dim=1) == logits["int8"].argmax(dim=1)).sum().item()
        pixels += masks.numel()
        for kind, values in logits.items():
            dice[kind] += dice_score(values, masks).tolist()
    return {"split": "valid", "images": len(dice["float"]), "argmax_agreement": agreeing / pixels,
            "float_dice": float(np.mean(dice["float"])), "int8_dice": float(np.mean(dice["int8"]))}


def check_accuracy(float_path, path, data_path, max_dice_drop, runtime):
    """compare_on_held_out of the float file (in ONNX Runtime) and the INT8 file at path (in `runtime`); print the
    figures, and raise ProjectError where the INT8 model's Dice is more than max_dice_drop below the float one's."""
    metadata = read_onnx_metadata(float_path)
    figures = compare_on_held_out(onnx_network(float_path, CPU), onnx_network(path, CPU, runtime, int8=True),
                                  data_path, metadata["model_record"])
    drop = figures["float_dice"] - figures["int8_dice"]
    print(f"INT8 check on {figures['images']} validation images (not used for calibration): argmax agrees on "
          f"{100 * figures['argmax_agreement']:.3f} % of the pixels; Dice {figures['float_dice']:.4f} in float, "
          f"{figures['int8_dice']:.4f} in INT8 ({runtime})")
    if not drop <= max_dice_drop:  # also true for NaN
        raise ProjectError(f"the INT8 model loses too much: on {figures['images']} validation images its Dice is "
                           f"{figures['int8_dice']:.4f} against {figures['float_dice']:.4f} in float (a drop of "
                           f"{drop:.4f}, more than --max_dice_drop {max_dice_drop}; argmax agreement "
                           f"{100 * figures['argmax_agreement']:.3f} %), so no INT8 file was written; try another "
                           f"--calibration_method or more --calibration_images.")
    return figures


def quantize_checked(float_path, out, data_path, count=DEFAULT_CALIBRATION_IMAGES, method="minmax",
                     activations="uint8", runtime="onnxruntime", max_dice_drop=DEFAULT_MAX_DICE_DROP):
    """quantize_onnx on data_path's training images, then check_accuracy on its validation images;
    out takes its name only when the check passes, with the check's figures in its record. Returns the record."""
    metadata = {}

    def write(tmp):
        metadata.update(quantize_onnx(float_path, tmp, data_path, count, method, activations, runtime))
        metadata[QUANTIZATION_KEY]["check"] = check_accuracy(float_path, tmp, data_path, max_dice_drop, runtime)
        write_metadata(tmp, metadata)

    atomic_write(out, write)
    return metadata
