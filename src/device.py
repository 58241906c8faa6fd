"""Where a run computes: device choice, mixed precision, and the processes of a torchrun launch."""
import contextlib
import os

import torch
import torch.distributed as dist

from errors import ProjectError

DEVICES = ("auto", "cuda", "mps", "cpu")


def choose_device(name="auto"):
    """'auto' picks CUDA, then MPS, then the CPU; an explicit device that is not there is an error."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": has_mps}
    if name == "auto":
        name = next(kind for kind in ("cuda", "mps", "cpu") if available[kind])
    if not available.get(name, False):
        raise ProjectError(f"--device {name} was asked for, but this machine has no {name} device; use --device auto.")
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def autocast(device, enabled):
    """Mixed precision: bf16 where the device supports it, else fp16 (which needs a GradScaler to train)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=autocast_dtype(device))


def autocast_dtype(device):
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def grad_scaler(device, amp):
    """Loss scaling only matters for fp16; with bf16 or float32 the scaler is a pass-through."""
    return torch.amp.GradScaler(device.type, enabled=amp and autocast_dtype(device) == torch.float16)


def init_distributed(device_name="auto"):
    """Under torchrun, join the process group (NCCL on CUDA, gloo on the CPU); return (device, rank, world_size)."""
    device = choose_device(device_name)
    if "RANK" not in os.environ or dist.is_initialized():
        return device, process_rank(), dist.get_world_size() if dist.is_initialized() else 1
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device, dist.get_rank(), dist.get_world_size()


def process_rank():
    """This process's rank under torchrun; 0 in a single process."""
    return dist.get_rank() if dist.is_initialized() else 0


def is_main_process():
    return process_rank() == 0


def all_reduce_sum(tensor):
    """Sum a tensor over all processes, in place (a no-op in a single process); returns it."""
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor
