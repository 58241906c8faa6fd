"""Checkpoints: one dict of tensors and plain values, written atomically, read without unpickling objects."""
from pathlib import Path

import torch

from errors import ProjectError
from files import atomic_write


def save_checkpoint(state, path):
    """Atomically torch.save a dict of tensors and plain Python values."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path, what="--model"):
    """Load a .pth with weights_only=True (no arbitrary unpickling); clear errors for missing or damaged files."""
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"{what} {path}: no such file.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    # A damaged or foreign file makes torch.load fail with almost any exception type (KeyError, UnpicklingError, ...).
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ProjectError(
            f"{what} {path} could not be read as a PyTorch checkpoint; it may be truncated, "
            f"from another program, or hold pickled objects that are not plain values ({reason})."
        ) from None


def training_args(checkpoint):
    """The train.py arguments a checkpoint was written with, as a dict; checkpoints written before the CBAM
    setting was stored as use_cbam hold it as no_cbam."""
    args = dict(checkpoint["args"])
    if "no_cbam" in args:
        args["use_cbam"] = not args.pop("no_cbam")
    return args
