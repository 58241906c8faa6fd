"""Model construction: the one place that turns a model name into a network."""
from pathlib import Path

import torch

from models.resnet34_unet import ResNet34UNet
from models.unet import UNet
from utils import ProjectError

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


def load_encoder_weights(encoder, source):
    """Load a torchvision-format resnet34 state dict ('imagenet' downloads it) into the encoder; fc.* is ignored."""
    state = imagenet_resnet34_state() if source == "imagenet" else resnet34_state_from_file(source)
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ProjectError(
            f"The encoder weights from {source} are not a torchvision resnet34 state dict: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}."
        )


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
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"--encoder_weights {path}: no such file (expected 'imagenet' or a resnet34 .pth file).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ProjectError(f"--encoder_weights {path} could not be read as a PyTorch state dict ({error}).") from None
    if not isinstance(state, dict):
        raise ProjectError(f"--encoder_weights {path} holds a {type(state).__name__}, not a resnet34 state dict.")
    return state
