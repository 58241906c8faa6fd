"""What every benchmark shares: the environment the figures depend on, and interleaved timing (every task, then
every task again, so that a change in the machine's load touches all of them alike)."""
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # every benchmark module imports this one first, and then src/'s modules


def environment(device):
    """What the figures depend on: device, torch, threads, allocator settings and the machine's load."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    allocator = {key: os.environ[key] for key in ("GLIBC_TUNABLES", "LD_PRELOAD", "MALLOC_CONF",
                                                  "PYTORCH_CUDA_ALLOC_CONF") if key in os.environ}
    return {"device": f"{device.type}: {name}", "torch": torch.__version__, "threads": torch.get_num_threads(),
            "allocator": allocator or "default", "load_average": list(os.getloadavg()),
            "python": platform.python_version()}


def cpu_name():
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    return f"{model}, {os.cpu_count()} logical cores"


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(step, device):
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return time.perf_counter() - start


def calibrate(step, device, warmup, min_seconds):
    """Run the warm-up calls; return how many calls make one repetition last about min_seconds (at least 1)."""
    for _ in range(warmup - 1):
        step()
    return max(1, round(min_seconds / seconds_per_call(step, device)))


def interleaved_rates(tasks, device, repeats):
    """{name: median items/s}; tasks are {name: (step, calls per repetition, items per call)}, timed in turn."""
    rates = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, (step, calls, items) in tasks.items():
            synchronize(device)
            start = time.perf_counter()
            for _ in range(calls):
                step()
            synchronize(device)
            rates[name].append(calls * items / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def step_memory_mib(step, device):
    """Peak CUDA memory of one call above what was allocated just before it (None on other devices)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20
