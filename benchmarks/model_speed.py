"""Training and inference speed of this project's models against segmentation_models_pytorch's Unet, the matmul peak
timed in the same loop, and the PyTorch operators each step dispatches."""
import copy

import torch
import torchinfo
from torch.utils._python_dispatch import TorchDispatchMode

from timing import calibrate, interleaved_rates, step_memory_mib
from device import autocast, grad_scaler  # noqa: E402
from errors import ProjectError  # noqa: E402
from losses import compute_loss  # noqa: E402
from models import build_model  # noqa: E402
from models.blocks import fold_batchnorm  # noqa: E402

REFERENCE = "smp_Unet_resnet34"
# The reference in the layout its users get by default, measured beside it when --channels_last is on.
REFERENCE_NCHW = "smp_Unet_resnet34_nchw"
SMP_DEEPLAB = "smp_DeepLabV3Plus_resnet34"
MODELS = ("Unet", "ResNet34_Unet", "ResNet34_Unet_nocbam", "DeepLabV3Plus", "HRNet", REFERENCE, REFERENCE_NCHW,
          SMP_DEEPLAB)


def available_models(requested, channels_last):
    """The models to measure; the reference is left out of the default set when its package is missing."""
    try:
        import segmentation_models_pytorch  # noqa: F401
        has_smp = True
    except ImportError:
        has_smp = False
    if requested is None:
        if not has_smp:
            print("segmentation_models_pytorch is not installed, so the reference is not measured "
                  "(pip install -r requirements-bench.txt).")
        return [name for name in MODELS if (has_smp or not name.startswith("smp_"))
                and (channels_last or name != REFERENCE_NCHW)]
    if any(name.startswith("smp_") for name in requested) and not has_smp:
        raise ProjectError("--models smp_* needs segmentation_models_pytorch; pip install -r "
                           "requirements-bench.txt, or leave it out of --models.")
    return list(dict.fromkeys(requested))


def build_candidate(name):
    """This project's models by name (a '_nocbam' suffix switches CBAM off); smp_<Architecture>_<encoder>[_nchw]
    is segmentation_models_pytorch's, untrained, for two classes."""
    if name.startswith("smp_"):
        import segmentation_models_pytorch as smp
        _, architecture, encoder = name.removesuffix("_nchw").split("_")
        return getattr(smp, architecture)(encoder, encoder_weights=None, classes=2)
    return build_model(name.removesuffix("_nocbam"), use_cbam=not name.endswith("_nocbam"))


def inference_model(name, model):
    """This project's models infer as src/inference.py runs them, with BatchNorm folded into the convolutions;
    the reference as its users run it."""
    if name.startswith("smp_"):
        return model
    return fold_batchnorm(copy.deepcopy(model).eval())


def random_batch(batch_size, image_size, memory_format, device):
    images = torch.randn(batch_size, 3, image_size, image_size, device=device).contiguous(memory_format=memory_format)
    return images, torch.randint(0, 2, (batch_size, image_size, image_size), device=device)


def training_step(model, memory_format, args, device):
    """Callables on a fixed random batch: (one training step of the report's loop, its forward and backward)."""
    images, masks = random_batch(args.batch_size, args.image_size, memory_format, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = grad_scaler(device, args.amp)

    def forward_backward():
        optimizer.zero_grad(set_to_none=True)
        model.train()
        with autocast(device, args.amp):
            loss = compute_loss("ce", model(images), masks)
        scaler.scale(loss).backward()

    def step():
        forward_backward()
        scaler.step(optimizer)
        scaler.update()

    return step, forward_backward


def inference_step(model, batch_size, memory_format, args, device):
    images, _ = random_batch(batch_size, args.image_size, memory_format, device)

    def step():
        model.eval()
        with torch.inference_mode(), autocast(device, args.amp):
            model(images)

    return step


def prepare_model(name, args, device):
    """(record, tasks) of one model: its size and FLOPs, warmed-up steps, and a training step's memory."""
    model = build_candidate(name)
    mult_adds = torchinfo.summary(model, input_size=(1, 3, args.image_size, args.image_size), verbose=0).total_mult_adds
    channels_last = args.channels_last and name != REFERENCE_NCHW
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    train, infer = (torch.compile(net, dynamic=False) if args.compile else net
                    for net in (model, inference_model(name, model)))
    train_step, forward_backward = training_step(train, memory_format, args, device)
    steps = {"train": (train_step, args.batch_size),
             "infer_bs1": (inference_step(infer, 1, memory_format, args, device), 1),
             f"infer_bs{args.batch_size}": (inference_step(infer, args.batch_size, memory_format, args, device),
                                            args.batch_size)}
    tasks = {(name, kind): (step, calibrate(step, device, args.warmup, args.min_seconds), items)
             for kind, (step, items) in steps.items()}
    record = {"params": sum(p.numel() for p in model.parameters()),
              "train_gflop_per_image": mult_adds * 2 * 3 / 1e9,
              "train_step_memory_mib": step_memory_mib(train_step, device)}
    # Compiled code runs its own fused kernels, which a count of PyTorch operators does not see.
    record["train_ops"] = None if args.compile else dispatched_ops(forward_backward)
    record["infer_ops"] = None if args.compile else dispatched_ops(steps["infer_bs1"][0])
    return record, tasks


class OperatorCounter(TorchDispatchMode):
    """Counts the PyTorch operators dispatched while it is active, views excluded (they launch no work)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += not func.is_view
        return func(*args, **(kwargs or {}))


def dispatched_ops(step):
    """Operators one call of step dispatches; on a GPU each costs a kernel launch and the framework's time to
    issue it, which set the step time when the batch is too small to keep the GPU busy."""
    with OperatorCounter() as counter:
        step()
    return counter.count


def peak_tasks(device, args):
    """Dense matrix multiplies, timed along with the models: torch.mm, and the same product as a channels_last 1x1
    convolution (the library the models' convolutions use; on AMD CPUs oneDNN's kernels outrun MKL's sgemm).
    float32 on the CPU (bf16 with --amp), bf16 on CUDA."""
    n, dtype = peak_shape(device, args)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    pixels = a.view(1, n, n // 64, 64).contiguous(memory_format=torch.channels_last)
    kernel = b.view(n, n, 1, 1)

    def mm():
        torch.mm(a, b, out=out)

    def conv1x1():
        with torch.inference_mode():
            torch.nn.functional.conv2d(pixels, kernel)

    gflop = 2 * n**3 / 1e9
    return {("peak", name): (step, calibrate(step, device, args.warmup, args.min_seconds), gflop)
            for name, step in (("torch.mm", mm), ("conv1x1", conv1x1))}


def peak_shape(device, args):
    if device.type == "cuda":
        return 8192, torch.bfloat16
    return 4096, torch.bfloat16 if args.amp else torch.float32


def measure(names, args, device):
    """(peak, {model: record}): matmul peaks and per-model figures, all timed in one interleaved loop."""
    tasks = peak_tasks(device, args)
    records = {}
    for name in names:
        print(f"warming up {name} ...", flush=True)
        records[name], model_tasks = prepare_model(name, args, device)
        tasks.update(model_tasks)
    rates = interleaved_rates(tasks, device, args.repeats)
    size, dtype = peak_shape(device, args)
    peak = {"torch_mm_gflops": rates[("peak", "torch.mm")], "conv1x1_gflops": rates[("peak", "conv1x1")],
            "dtype": str(dtype).removeprefix("torch."), "size": size}
    for (name, kind), rate in rates.items():
        if name != "peak":
            records[name][f"{kind}_images_per_second"] = rate
    for name, record in records.items():
        for kind in ("train", "infer_bs1", f"infer_bs{args.batch_size}"):
            reference = records.get(REFERENCE, {}).get(f"{kind}_images_per_second")
            record[f"{kind}_vs_reference"] = record[f"{kind}_images_per_second"] / reference if reference else None
        record["train_gflops"] = record["train_images_per_second"] * record["train_gflop_per_image"]
        record["train_percent_of_torch_mm"] = 100 * record["train_gflops"] / peak["torch_mm_gflops"]
        record["train_percent_of_conv1x1"] = 100 * record["train_gflops"] / peak["conv1x1_gflops"]
    return peak, records


def model_table(records, batch_size):
    bs = batch_size
    lines = [f"| model | params | train img/s | vs ref | infer bs1 img/s | vs ref | infer bs{bs} img/s | vs ref "
             "| train step memory MiB | train GFLOP/s | % of torch.mm | % of 1x1 conv | ops fwd+bwd | ops infer |",
             "|---" * 14 + "|"]
    for name, r in records.items():
        memory, train_ops, infer_ops = (
            "n/a" if value is None else f"{value:.0f}"
            for value in (r["train_step_memory_mib"], r["train_ops"], r["infer_ops"]))
        lines.append(
            f"| {name} | {r['params']:,} | {r['train_images_per_second']:.2f} | {ratio(r['train_vs_reference'])} "
            f"| {r['infer_bs1_images_per_second']:.2f} | {ratio(r['infer_bs1_vs_reference'])} "
            f"| {r[f'infer_bs{bs}_images_per_second']:.2f} | {ratio(r[f'infer_bs{bs}_vs_reference'])} "
            f"| {memory} | {r['train_gflops']:.0f} | {r['train_percent_of_torch_mm']:.0f} % "
            f"| {r['train_percent_of_conv1x1']:.0f} % | {train_ops} | {infer_ops} |")
    return lines


def ratio(value):
    return "" if value is None else f"{value:.2f}x"
