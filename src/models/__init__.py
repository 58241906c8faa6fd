"""Model construction: the one place that turns a model name into a network."""
import argparse

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from models.resnet34_unet import ResNet34UNet
from models.unet import UNet
from utils import NORMALIZATION, ProjectError, load_checkpoint

MODEL_TYPES = {"unet": "Unet", "resnet34_unet": "ResNet34_Unet"}


def canonical_model_type(name):
    """Map any spelling of the report's model names ('UNet', 'Resnet34_Unet', ...) to 'Unet' or 'ResNet34_Unet'."""
    key = str(name).strip().lower()
    if key not in MODEL_TYPES:
        valid = ", ".join(sorted(set(MODEL_TYPES.values())))
        raise ValueError(f"unknown model type {name!r}; valid model types (any letter case): {valid}")
    return MODEL_TYPES[key]


def model_type_arg(text):
    """argparse type: a canonical model type, or an error message that lists the valid names."""
    try:
        return canonical_model_type(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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


def load_encoder_weights(encoder, source):
    """Load a torchvision-format resnet34 state dict ('imagenet' downloads it) into the encoder; fc.* is ignored."""
    state = imagenet_resnet34_state() if source == "imagenet" else resnet34_state_from_file(source)
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    expected = encoder.state_dict()
    wrong = sorted(set(expected) ^ set(state)) + sorted(
        key for key in set(expected) & set(state) if expected[key].shape != state[key].shape)
    if wrong:
        raise ProjectError(
            f"The encoder weights from {source} are not a torchvision resnet34 state dict: "
            f"{len(wrong)} tensors are missing, extra or of another shape, such as {wrong[:3]}."
        )
    encoder.load_state_dict(state)


def imagenet_resnet34_state():
    import torchvision

    weights = torchvision.models.ResNet34_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=True)
    except OSError as error:
        raise ProjectError(
            f"Could not download the ImageNet ResNet34 weights from {weights.url} ({error}); "
            "on a machine without internet, download that file elsewhere and pass its path instead, "
            "as --encoder_weights /path/to/resnet34-b627a593.pth."
        ) from None


def resnet34_state_from_file(path):
    state = load_checkpoint(path, what="--encoder_weights")
    if not isinstance(state, dict):
        raise ProjectError(f"--encoder_weights {path} holds a {type(state).__name__}, not a resnet34 state dict.")
    return state


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
    if model_type is not None and canonical_model_type(model_type) != record["model_type"]:
        raise ProjectError(f"--model_type {model_type} disagrees with --model {path}, which holds a "
                           f"{record['model_type']}; drop --model_type or pick the matching checkpoint.")
    if use_cbam is not None and record["model_type"] == "ResNet34_Unet" and use_cbam != record["use_cbam"]:
        state = "with" if record["use_cbam"] else "without"
        raise ProjectError(f"--no_cbam disagrees with --model {path}, which was trained {state} CBAM; "
                           "drop the flag or pick the matching checkpoint.")
    model = build_model(record["model_type"], record["num_classes"], record["use_cbam"])
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError:
        raise ProjectError(f"--model {path}: its weights do not fit the {record['model_type']} its record names; "
                           "the file was changed after src/train.py wrote it.") from None
    return prepare_for_inference(model, device), checkpoint


def prepare_for_inference(model, device):
    """The model as evaluation and inference run it: eval mode, BatchNorm folded, channels_last, on the device."""
    return fold_batchnorm(model.eval()).to(device, memory_format=torch.channels_last)


def fold_batchnorm(model):
    """Fold each BatchNorm2d into the Conv2d registered just before it in the same parent module (in these models
    that is the convolution whose output it normalises) and replace it with Identity. The outputs of the eval-mode
    model stay the same up to rounding, and inference skips one pass over every normalised feature map."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode: folding uses the running statistics")
    for parent in list(model.modules()):
        names = list(parent._modules)
        for conv_name, bn_name in zip(names, names[1:]):
            conv, bn = parent._modules[conv_name], parent._modules[bn_name]
            if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d:
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, nn.Identity())
    return model
