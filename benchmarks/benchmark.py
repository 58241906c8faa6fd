"""Speed of this project's networks and data pipeline, with segmentation_models_pytorch's Unet as the reference.

    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184 \\
        python benchmarks/benchmark.py --device cpu --channels_last
    python benchmarks/benchmark.py --device cuda --amp --channels_last --data_path dataset/oxford-iiit-pet
    python benchmarks/benchmark.py --onnx --no_loader --models Unet ResNet34_Unet ResNet34_Unet_nocbam

Everything runs in one process and the repetitions are interleaved (every model, then every model again), so a
change in the machine's load touches all of them alike and the ratios stay fair. Figures are medians over
--repeats. Training step: forward, cross-entropy, backward and an Adam step on a fixed random batch. The
--amp, --channels_last and --compile flags apply to every model, the reference included (with --channels_last,
smp_Unet_resnet34_nchw is the reference in its default NCHW layout). smp_DeepLabV3Plus_resnet34 is smp's
DeepLabV3Plus("resnet34"), to put beside this project's DeepLabV3Plus. --onnx measures inference alone: each of
this project's models in ONNX Runtime against eager PyTorch as src/evaluate.py runs it (BatchNorm folded,
channels_last, inference mode, float32), at batch 1 and at --batch_size.
"""
import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchinfo
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run as a script from anywhere, like the scripts in src/

import arg_types  # noqa: E402
import cli  # noqa: E402
from data import default_num_workers  # noqa: E402
from device import autocast, autocast_dtype, choose_device, grad_scaler  # noqa: E402
from errors import ProjectError, run_cli  # noqa: E402
from export import export_onnx  # noqa: E402
from files import save_json  # noqa: E402
from losses import compute_loss  # noqa: E402
from models import build_model, model_record, prepare_for_inference  # noqa: E402
from models.blocks import ConvTranspose2x2, fold_batchnorm, mean_and_max  # noqa: E402
from oxford_pet import OxfordPetDataset, SimpleOxfordPetDataset, resize_image, resize_trimap  # noqa: E402
from runtime import load_onnx_model  # noqa: E402
from transforms import SegmentationTransform  # noqa: E402

REFERENCE = "smp_Unet_resnet34"
# The reference in the layout its users get by default, measured beside it when --channels_last is on.
REFERENCE_NCHW = "smp_Unet_resnet34_nchw"
SMP_DEEPLAB = "smp_DeepLabV3Plus_resnet34"
MODELS = ("Unet", "ResNet34_Unet", "ResNet34_Unet_nocbam", "DeepLabV3Plus", "HRNet", REFERENCE, REFERENCE_NCHW,
          SMP_DEEPLAB)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_device_flags(parser)
    parser.add_argument("--image_size", type=arg_types.image_size_int, default=256)
    parser.add_argument("--batch_size", "-b", type=arg_types.positive_int, default=8)
    parser.add_argument("--amp", action="store_true", help="autocast (bf16 where supported, else fp16)")
    parser.add_argument("--channels_last", action="store_true", help="channels_last models and inputs")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model")
    parser.add_argument("--models", nargs="*", choices=MODELS, default=None,
                        help=f"default: all (smp_* only when segmentation_models_pytorch is installed, "
                             f"{REFERENCE_NCHW} only with --channels_last); "
                             "--models with no name measures no model")
    parser.add_argument("--repeats", type=arg_types.positive_int, default=5,
                        help="timed repetitions; figures are medians")
    parser.add_argument("--warmup", type=arg_types.positive_int, default=2,
                        help="untimed steps of each kind before timing")
    parser.add_argument("--min_seconds", type=arg_types.non_negative_float, default=1.0,
                        help="each repetition repeats a step until it lasts about this long")
    parser.add_argument("--data_path", default=str(ROOT / "dataset" / "oxford-iiit-pet-sample"),
                        help="a dataset folder whose train split the loaders read")
    parser.add_argument("--no_loader", action="store_true", help="skip the data loader comparison")
    parser.add_argument("--blocks", action="store_true",
                        help="also time each fast layer of src/models/blocks.py against its plain PyTorch version")
    parser.add_argument("--onnx", action="store_true",
                        help="inference only: ONNX Runtime against eager PyTorch for this project's models in --models "
                             "(float32; not with --amp or --compile)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    return parser


# ---------------------------------------------------------------- environment, timing, memory

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


# ---------------------------------------------------------------- models

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


# ---------------------------------------------------------------- building blocks

def block_steps(args, device):
    """{block: (plain step, fast step)}: each fast layer of models/blocks.py and its plain PyTorch counterpart on
    the inputs ResNet34_Unet gives it at --image_size and --batch_size (--amp and --channels_last as for models)."""
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    dtype = autocast_dtype(device) if args.amp else torch.float32
    size, batch = args.image_size, args.batch_size
    fast_up = ConvTranspose2x2(32, 32).to(device)
    plain_up = torch.nn.ConvTranspose2d(32, 32, 2, stride=2).to(device)
    plain_up.load_state_dict(fast_up.state_dict())
    low_res = torch.randn(batch, 32, size // 2, size // 2, device=device).contiguous(memory_format=memory_format)
    features = torch.randn(batch, 32, size, size, device=device, dtype=dtype).contiguous(memory_format=memory_format)
    model = build_model("ResNet34_Unet").eval().to(device, memory_format=memory_format)
    images = torch.randn(1, 3, size, size, device=device).contiguous(memory_format=memory_format)

    def upsample(layer):
        def step():
            with autocast(device, args.amp):
                out = layer(low_res.requires_grad_())
            out.float().sum().backward()
        return step

    def cbam_pooling(pool):
        def step():
            x = features.detach().requires_grad_()
            for dims in ((2, 3), (1,)):
                mean, peak = pool(x, dims)
                (mean.float().sum() + peak.float().sum()).backward()
        return step

    def infer(net):
        def step():
            with torch.inference_mode(), autocast(device, args.amp):
                net(images)
        return step

    def autograd_mean_and_max(x, dims):
        return x.mean(dims, keepdim=True), x.amax(dims, keepdim=True)

    return {
        "ConvTranspose2x2, forward + backward, 32 channels to full size": (upsample(plain_up), upsample(fast_up)),
        "mean_and_max (CBAM pooling), forward + backward, 32 channels at full size":
            (cbam_pooling(autograd_mean_and_max), cbam_pooling(mean_and_max)),
        "fold_batchnorm, ResNet34_Unet inference at batch 1":
            (infer(model), infer(fold_batchnorm(copy.deepcopy(model)))),
    }


def measure_blocks(args, device):
    """{block: {plain_ms, fast_ms, speedup}}, plain and fast steps timed in one interleaved loop."""
    tasks = {}
    for block, steps in block_steps(args, device).items():
        for kind, step in zip(("plain", "fast"), steps):
            tasks[(block, kind)] = (step, calibrate(step, device, args.warmup, args.min_seconds), 1)
    rates = interleaved_rates(tasks, device, args.repeats)
    return {block: {"plain_ms": 1000 / rates[(block, "plain")], "fast_ms": 1000 / rates[(block, "fast")],
                    "speedup": rates[(block, "fast")] / rates[(block, "plain")]}
            for block, _ in tasks}


def blocks_table(blocks):
    lines = ["| building block | plain ms | fast ms | speed-up |", "|---|---|---|---|"]
    return lines + [f"| {block} | {r['plain_ms']:.2f} | {r['fast_ms']:.2f} | {r['speedup']:.2f}x |"
                    for block, r in blocks.items()]


# ---------------------------------------------------------------- ONNX Runtime

def onnx_tasks(name, args, device, folder):
    """(runtime description, tasks): inference at batch 1 and --batch_size of one of this project's models, in eager
    PyTorch as src/evaluate.py runs it and exported to ONNX (src/export.py's export, without its parity check) in
    ONNX Runtime."""
    net = prepare_for_inference(build_candidate(name), torch.device("cpu"))
    record = model_record(name.removesuffix("_nocbam"), not name.endswith("_nocbam"), args.image_size)
    path = Path(folder) / f"{name}.onnx"
    export_onnx(net, {"model_record": record, "args": {}}, path)
    nets = {"pytorch": net.to(device), "onnxruntime": load_onnx_model(path, device)[0]}
    tasks = {}
    for batch_size in dict.fromkeys((1, args.batch_size)):
        for runtime, model in nets.items():
            step = inference_step(model, batch_size, torch.channels_last, args, device)
            tasks[(name, runtime, batch_size)] = (step, calibrate(step, device, args.warmup, args.min_seconds),
                                                  batch_size)
    options = nets["onnxruntime"].session.get_session_options()
    description = {"providers": nets["onnxruntime"].session.get_providers(),
                   "intra_op_num_threads": options.intra_op_num_threads,
                   "graph_optimization_level": str(options.graph_optimization_level)}
    return description, tasks


def measure_onnx(names, args, device):
    """{"onnxruntime": its settings, "models": {model: {pytorch|onnxruntime}_bs{n}_images_per_second and
    onnx_vs_pytorch_bs{n}}} for this project's models among names, all steps timed in one interleaved loop."""
    names = [name for name in names if not name.startswith("smp_")]
    tasks, description = {}, None
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            print(f"exporting and warming up {name} ...", flush=True)
            description, model_tasks = onnx_tasks(name, args, device, folder)
            tasks.update(model_tasks)
        rates = interleaved_rates(tasks, device, args.repeats)
    records = {name: {} for name in names}
    for (name, runtime, batch_size), rate in rates.items():
        records[name][f"{runtime}_bs{batch_size}_images_per_second"] = rate
    for record in records.values():
        for batch_size in dict.fromkeys((1, args.batch_size)):
            record[f"onnx_vs_pytorch_bs{batch_size}"] = (record[f"onnxruntime_bs{batch_size}_images_per_second"]
                                                         / record[f"pytorch_bs{batch_size}_images_per_second"])
    return {"onnxruntime": description, "models": records}


def onnx_table(onnx, batch_size):
    sizes = list(dict.fromkeys((1, batch_size)))
    runtime = onnx["onnxruntime"]
    lines = [f"ONNX Runtime: {', '.join(runtime['providers'])}, intra_op_num_threads "
             f"{runtime['intra_op_num_threads']}, {runtime['graph_optimization_level']}", "",
             "| model | " + " | ".join(f"PyTorch bs{n} img/s | ONNX Runtime bs{n} img/s | ONNX vs PyTorch bs{n}"
                                      for n in sizes) + " |",
             "|---" * (1 + 3 * len(sizes)) + "|"]
    for name, r in onnx["models"].items():
        cells = [f"{r[f'pytorch_bs{n}_images_per_second']:.2f} | {r[f'onnxruntime_bs{n}_images_per_second']:.2f} "
                 f"| {r[f'onnx_vs_pytorch_bs{n}']:.2f}x" for n in sizes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------- data loaders

class AugmentThenResize:
    """The report's pipeline: augment the original-size sample, then resize it to the training size, CHW image."""

    def __init__(self, image_size):
        self.augment = SegmentationTransform(seed=0)
        self.image_size = image_size

    def __call__(self, image, mask, trimap):
        image, mask, trimap = self.augment(image, mask, trimap)
        size = self.image_size
        return resize_image(image, size).transpose(2, 0, 1), resize_trimap(mask, size), resize_trimap(trimap, size)


def loader_pass(dataset, batch_size, num_workers):
    """A callable that reads one whole epoch of dataset through a DataLoader with num_workers workers."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         num_workers=num_workers, persistent_workers=num_workers > 0)

    def read_epoch():
        for _ in loader:
            pass

    return read_epoch


def loader_rates(datasets, args, num_workers):
    cpu = torch.device("cpu")
    tasks = {}
    for name, dataset in datasets.items():
        step = loader_pass(dataset, args.batch_size, num_workers)
        tasks[name] = (step, calibrate(step, cpu, args.warmup, args.min_seconds), len(dataset))
    return interleaved_rates(tasks, cpu, args.repeats)


def measure_loaders(args, num_workers):
    """Images/s of the train split: the report's way against the resize cache with augmentation at training size."""
    report = OxfordPetDataset(args.data_path, "train", AugmentThenResize(args.image_size))
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        cached = SimpleOxfordPetDataset(args.data_path, "train", SegmentationTransform(seed=0), args.image_size,
                                        cache_dir=cache_dir)
        build_seconds = time.perf_counter() - start
        # Loading in this process gets a DataLoader worker's setting: one torch thread (for collating).
        torch.set_num_threads(1 if num_workers == 0 else threads)
        try:
            rates = loader_rates({"report": report, "cached": cached}, args, num_workers)
        finally:
            torch.set_num_threads(threads)
    return {"data_path": str(args.data_path), "images": len(report), "num_workers": num_workers,
            "report_images_per_second": rates["report"], "cached_images_per_second": rates["cached"],
            "cached_vs_report": rates["cached"] / rates["report"], "cache_build_seconds": build_seconds}


# ---------------------------------------------------------------- report

def markdown(results, args):
    env, peak = results["environment"], results.get("matmul_peak")
    flags = " ".join(f"--{flag}" for flag in ("amp", "channels_last", "compile", "onnx") if getattr(args, flag))
    lines = [f"{env['device']}; torch {env['torch']}, {env['threads']} threads, allocator {env['allocator']}, "
             f"load average {env['load_average'][0]:.2f} at the start, {env['load_average_at_end'][0]:.2f} at the end",
             f"{args.image_size}x{args.image_size}, batch {args.batch_size}, flags: {flags or 'none'}; "
             f"medians of {args.repeats}"
             + (f"; matmul peak ({peak['dtype']}, {peak['size']}^2): torch.mm {peak['torch_mm_gflops']:.0f} GFLOP/s, "
                f"as a 1x1 convolution {peak['conv1x1_gflops']:.0f} GFLOP/s" if peak else "")]
    if results.get("models"):
        lines += ["", *model_table(results["models"], args.batch_size)]
    if results.get("onnx", {}).get("models"):
        lines += ["", *onnx_table(results["onnx"], args.batch_size)]
    if results.get("blocks"):
        lines += ["", *blocks_table(results["blocks"])]
    if results.get("loader"):
        lines += ["", *loader_table(results["loader"], args.image_size)]
    return "\n".join(lines)


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


def loader_table(loader, image_size):
    lines = [f"Data loader, train split of {loader['data_path']} ({loader['images']} images), "
             f"{loader['num_workers']} workers:", "",
             "| loader | img/s | vs report's |", "|---|---|---|",
             f"| report's: decode, augment at original size, resize | {loader['report_images_per_second']:.0f} "
             "| 1.00x |",
             f"| resize cache, augment at {image_size}x{image_size} | {loader['cached_images_per_second']:.0f} "
             f"| {loader['cached_vs_report']:.2f}x |"]
    if "cached_vs_resnet34_unet_train" in loader:
        train_rate, headroom = loader["resnet34_unet_train_images_per_second"], loader["cached_vs_resnet34_unet_train"]
        lines.append(f"| ResNet34_Unet's training step, for comparison | {train_rate:.1f} "
                     f"| the cached loader delivers {headroom:.1f}x its images/s |")
    return lines


def ratio(value):
    return "" if value is None else f"{value:.2f}x"


def main(args):
    if args.onnx and (args.amp or args.compile):
        raise ProjectError("--onnx compares float32 eager PyTorch with ONNX Runtime; leave out --amp and --compile.")
    if Path(args.out).is_dir():  # found now rather than after minutes of measuring
        raise ProjectError(f"--out {args.out} is an existing folder; give the path of the JSON file to write.")
    device = choose_device(args.device)
    names = available_models(args.models, args.channels_last)
    results = {"environment": environment(device), "args": vars(args)}
    if not args.no_loader:
        num_workers = default_num_workers(device) if args.num_workers is None else args.num_workers
        results["loader"] = measure_loaders(args, num_workers)
    if args.onnx:
        results["onnx"] = measure_onnx(names, args, device)
    else:
        results["matmul_peak"], results["models"] = measure(names, args, device)
    if args.blocks:
        results["blocks"] = measure_blocks(args, device)
    if results.get("loader") and "ResNet34_Unet" in results.get("models", {}):
        train_rate = results["models"]["ResNet34_Unet"]["train_images_per_second"]
        results["loader"]["resnet34_unet_train_images_per_second"] = train_rate
        results["loader"]["cached_vs_resnet34_unet_train"] = results["loader"]["cached_images_per_second"] / train_rate
    results["environment"]["load_average_at_end"] = list(os.getloadavg())
    save_json(results, args.out)
    print(markdown(results, args))
    return results


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
