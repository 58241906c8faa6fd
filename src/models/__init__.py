"""Model construction: the one place that turns a model name, or a checkpoint's record, into a network."""
from dataclasses import dataclass

import torch

from checkpoint import load_checkpoint
from data import NORMALIZATION
from errors import ProjectError
from model_names import MODEL_PARTS, canonical_model_type, has_cbam, has_encoder
from models.blocks import fold_batchnorm
from models.deeplabv3plus import DeepLabV3Plus
from models.hrnet import HRNet
from models.resnet34 import load_encoder_weights
from models.resnet34_unet import ResNet34UNet
from models.unet import UNet


@dataclass(frozen=True)
class Architecture:
    """A network class (built with num_classes, and use_cbam when it has CBAM) and the optional parts it has: CBAM,
    which --no_cbam removes, and a ResNet34Encoder at .encoder, which --encoder_weights loads."""
    network: type
    has_cbam: bool = False
    has_encoder: bool = False


NETWORKS = {"Unet": UNet, "ResNet34_Unet": ResNet34UNet, "DeepLabV3Plus": DeepLabV3Plus, "HRNet": HRNet}
ARCHITECTURES = {name: Architecture(NETWORKS[name], has_cbam(name), has_encoder(name)) for name in MODEL_PARTS}


def check_model_flags(model_type, use_cbam=True, encoder_weights=None):
    """--no_cbam (use_cbam False) and --encoder_weights name parts that only some models have; for any other model
    they are an error, not a silent no-op."""
    model_type = canonical_model_type(model_type)
    architecture = ARCHITECTURES[model_type]
    if not use_cbam and not architecture.has_cbam:
        names = ", ".join(name for name, arch in ARCHITECTURES.items() if arch.has_cbam)
        raise ProjectError(f"--no_cbam applies to the models with CBAM ({names}) only; {model_type} has no CBAM "
                           "to switch off, so drop the flag.")
    if encoder_weights and not architecture.has_encoder:
        names = ", ".join(name for name, arch in ARCHITECTURES.items() if arch.has_encoder)
        raise ProjectError(f"--encoder_weights applies to the models with a ResNet34 encoder ({names}) only; "
                           f"{model_type} has no pretrained encoder and trains from scratch, so drop the flag.")


def build_model(model_type, num_classes=2, use_cbam=True, encoder_weights=None):
    """Build a model by name; use_cbam=False and encoder_weights ('imagenet' or a file path) only for the models
    that have CBAM or a ResNet34 encoder (check_model_flags)."""
    model_type = canonical_model_type(model_type)
    check_model_flags(model_type, use_cbam, encoder_weights)
    architecture = ARCHITECTURES[model_type]
    options = {"use_cbam": use_cbam} if architecture.has_cbam else {}
    model = architecture.network(num_classes=num_classes, **options)
    if encoder_weights:
        load_encoder_weights(model.encoder, encoder_weights)
    return model


def model_record(model_type, use_cbam, image_size, num_classes=2):
    """What a checkpoint stores to rebuild and feed its model (plain values only)."""
    return {"model_type": canonical_model_type(model_type), "use_cbam": bool(use_cbam), "num_classes": num_classes,
            "image_size": image_size, "normalization": NORMALIZATION}


def load_trained_model(path, device, model_type=None, use_cbam=None):
    """Rebuild a model from a checkpoint's own record; model_type/use_cbam, when given, must agree with it."""
    checkpoint = load_checkpoint(path)
    record = checkpoint.get("model_record") if isinstance(checkpoint, dict) else None
    if record is None or "model" not in checkpoint:
        raise ProjectError(f"--model {path} is not a checkpoint of this project (it has no model record); "
                           "use a *_best_model.pth or *_last.pth written by src/train.py.")
    check_flags_agree_with_record(path, record, model_type, use_cbam)
    # A record's use_cbam means something only for a model with CBAM (older U-Net checkpoints may say False).
    model = build_model(record["model_type"], record["num_classes"],
                        record["use_cbam"] or not has_cbam(record["model_type"]))
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError:
        raise ProjectError(f"--model {path}: its weights do not fit the {record['model_type']} its record names; "
                           "the file was changed after src/train.py wrote it.") from None
    return prepare_for_inference(model, device), checkpoint


def check_flags_agree_with_record(path, record, model_type, use_cbam):
    """--model_type and --no_cbam, when given to a script that reads a checkpoint, must fit the model it holds."""
    if model_type is not None and canonical_model_type(model_type) != record["model_type"]:
        raise ProjectError(f"--model_type {model_type} disagrees with --model {path}, which holds a "
                           f"{record['model_type']}; drop --model_type or pick the matching checkpoint.")
    if use_cbam is None:
        return
    check_model_flags(record["model_type"], use_cbam)
    if use_cbam != record["use_cbam"]:
        state = "with" if record["use_cbam"] else "without"
        raise ProjectError(f"--no_cbam disagrees with --model {path}, which was trained {state} CBAM; "
                           "drop the flag or pick the matching checkpoint.")


def prepare_for_inference(model, device):
    """The model as evaluation and inference run it: eval mode, BatchNorm folded, channels_last, on the device."""
    return fold_batchnorm(model.eval()).to(device, memory_format=torch.channels_last)
