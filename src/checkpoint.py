"""Checkpoints: one dict of tensors and plain values, written atomically, read without unpickling objects."""
import os
from pathlib import Path

import torch

from errors import ProjectError
from files import atomic_write


def save_checkpoint(state, path):
    """Atomically torch.save a dict of tensors and plain Python values. Through a Python file, so that a full disk
    raises OSError (ENOSPC), which torch's zip writer may wrap in a RuntimeError of its own."""
    def write(tmp):
        with open(tmp, "wb") as f:
            try:
                torch.save(state, f)
            except RuntimeError as error:
                if isinstance(error.__context__, OSError):
                    raise error.__context__ from None
                raise
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def load_checkpoint(path, what="--model"):
    """Load a .pth with weights_only=True (no arbitrary unpickling); clear errors for missing or damaged files."""
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"{what} {path}: no such file.")
    if path.suffix.lower() == ".onnx":
        raise ProjectError(f"{what} {path} is an ONNX file; this needs a .pth checkpoint written by src/train.py "
                           "(evaluate.py, inference.py and analyze.py take either).")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    # A damaged or foreign file makes torch.load fail with almost any exception type (KeyError, UnpicklingError, ...).
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights_only" in str(error) or "Weights only" in reason:
            # torch's own advice here is to unpickle arbitrary objects, which this project never does
            reason = "torch's weights-only loader refused an object in it"
        raise ProjectError(
            f"{what} {path} could not be read as a PyTorch checkpoint; it may be truncated, "
            f"from another program, or hold pickled objects that are not plain values ({reason})."
        ) from None


LAST_KEYS = ("model", "args", "optimizer", "scheduler", "scaler", "epoch", "history")


def training_args(checkpoint):
    """The train.py arguments a checkpoint was written with, as a dict; checkpoints written before the CBAM
    setting was stored as use_cbam hold it as no_cbam."""
    args = dict(checkpoint["args"])
    if "no_cbam" in args:
        args["use_cbam"] = not args.pop("no_cbam")
    return args


def refuse_resume(path, what):
    raise ProjectError(f"--resume {path}: {what}; it was not written by src/train.py for the model its arguments "
                       "describe, or it was modified. Start afresh with --overwrite, or resume another file.")


def load_resumed_model(model, checkpoint, path):
    try:
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, TypeError, AttributeError) as error:
        refuse_resume(path, f"its model weights do not fit ({str(error).strip().splitlines()[0][:200]})")


def check_optimizer_state(checkpoint, optimizer, path):
    """ProjectError unless the saved optimizer state is for the optimizer's parameters, shape for shape: the fused
    Adam step would otherwise crash the interpreter on a tensor of another shape."""
    saved = checkpoint["optimizer"]
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or [len(group.get("params", ())) for group in groups] != [
            len(group["params"]) for group in optimizer.param_groups]:
        refuse_resume(path, "its optimizer state is for other parameters than the model's")
    params = [param for group in optimizer.param_groups for param in group["params"]]
    state = saved.get("state", {})
    for index, param in enumerate(params):
        for name, value in (state.get(index) or {}).items():
            if torch.is_tensor(value) and value.dim() > 0 and value.shape != param.shape:
                refuse_resume(path, f"its optimizer's {name} of parameter {index} has shape {tuple(value.shape)}, "
                              f"the parameter {tuple(param.shape)}")


def check_training_checkpoint(checkpoint, path):
    """ProjectError unless a --resume file holds what a *_last.pth of src/train.py holds."""
    missing = [key for key in LAST_KEYS if key not in checkpoint] if isinstance(checkpoint, dict) else LAST_KEYS
    if missing:
        best = isinstance(checkpoint, dict) and "model_record" in checkpoint and "optimizer" not in checkpoint
        detail = "a best model holds no optimizer state to resume from" if best else f"it lacks {', '.join(missing)}"
        raise ProjectError(f"--resume {path} is not a *_last.pth checkpoint of src/train.py ({detail}).")
    if not isinstance(checkpoint["args"], dict) or "model_type" not in checkpoint["args"]:
        raise ProjectError(f"--resume {path} holds no training arguments to continue with; it was not written by "
                           "src/train.py, or it was modified.")
