"""Model construction: the one place that turns a model name, or a checkpoint's record, into a network."""
import torch

from checkpoint import load_checkpoint
from data import NORMALIZATION
from errors import ProjectError
from models.blocks import fold_batchnorm
from models.resnet34 import load_encoder_weights
from models.resnet34_unet import ResNet34UNet
from models.unet import UNet

MODEL_TYPES = {"unet": "Unet", "resnet34_unet": "ResNet34_Unet"}


def canonical_model_type(name):
    """Map any spelling of the report's model names ('UNet', 'Resnet34_Unet', ...) to 'Unet' or 'ResNet34_Unet'."""
    key = str(name).strip().lower()
    if key not in MODEL_TYPES:
        valid = ", ".join(sorted(set(MODEL_TYPES.values())))
        raise ValueError(f"unknown model type {name!r}; valid model types (any letter case): {valid}")
    return MODEL_TYPES[key]


def build_model(model_type, num_classes=2, use_cbam=True, encoder_weights=None):
    """Build 'Unet' or 'ResNet34_Unet'; encoder_weights ('imagenet' or a file path) is for ResNet34_Unet only."""
    model_type = canonical_model_type(model_type)
    if model_type == "Unet":
        if encoder_weights:
            raise ProjectError("--encoder_weights applies to ResNet34_Unet only; U-Net has no pretrained encoder.")
        return UNet(num_classes=num_classes)
    model = ResNet34UNet(num_classes=num_classes, use_cbam=use_cbam)
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
    check_model_flags(record, path, model_type, use_cbam)
    model = build_model(record["model_type"], record["num_classes"], record["use_cbam"])
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError:
        raise ProjectError(f"--model {path}: its weights do not fit the {record['model_type']} its record names; "
                           "the file was changed after src/train.py wrote it.") from None
    return prepare_for_inference(model, device), checkpoint


def check_model_flags(record, path, model_type=None, use_cbam=None):
    """--model_type and --no_cbam, when given (not None), must agree with the model record of the file --model."""
    if model_type is not None and canonical_model_type(model_type) != record["model_type"]:
        raise ProjectError(f"--model_type {model_type} disagrees with --model {path}, which holds a "
                           f"{record['model_type']}; drop --model_type or pick the matching checkpoint.")
    if use_cbam is not None and record["model_type"] == "ResNet34_Unet" and use_cbam != record["use_cbam"]:
        state = "with" if record["use_cbam"] else "without"
        raise ProjectError(f"--no_cbam disagrees with --model {path}, which was trained {state} CBAM; "
                           "drop the flag or pick the matching checkpoint.")


def prepare_for_inference(model, device):
    """The model as evaluation and inference run it: eval mode, BatchNorm folded, channels_last, on the device."""
    return fold_batchnorm(model.eval()).to(device, memory_format=torch.channels_last)
