"""Each fast layer of src/models/blocks.py against its plain PyTorch version."""
import copy

import torch

from timing import calibrate, interleaved_rates
from device import autocast, autocast_dtype  # noqa: E402
from models import build_model  # noqa: E402
from models.blocks import ConvTranspose2x2, fold_batchnorm, mean_and_max  # noqa: E402


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
