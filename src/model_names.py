"""The model names and the optional parts each model has, without torch, for the scripts that only read results
(report.py, plot_history.py); models/__init__.py maps each name to its network."""

# CBAM: --no_cbam removes it. encoder: a ResNet34Encoder that --encoder_weights loads.
MODEL_PARTS = {"Unet": (), "ResNet34_Unet": ("cbam", "encoder"), "DeepLabV3Plus": ("encoder",), "HRNet": ()}
MODEL_TYPES = {name.lower(): name for name in MODEL_PARTS}


def canonical_model_type(name):
    """Map any letter case of a model name ('UNet', 'Resnet34_Unet', 'deeplabv3plus', ...) to its canonical name."""
    key = str(name).strip().lower()
    if key not in MODEL_TYPES:
        valid = ", ".join(MODEL_PARTS)
        raise ValueError(f"unknown model type {name!r}; valid model types (any letter case): {valid}")
    return MODEL_TYPES[key]


def has_cbam(model_type):
    """Whether a model type (any spelling; False for names that are none) has CBAM to switch off."""
    name = MODEL_TYPES.get(str(model_type).strip().lower())
    return name is not None and "cbam" in MODEL_PARTS[name]


def has_encoder(model_type):
    """Whether a model type has a ResNet34 encoder that --encoder_weights loads."""
    return "encoder" in MODEL_PARTS[canonical_model_type(model_type)]
