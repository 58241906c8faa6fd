"""Building blocks the networks share, and the layers that only make them faster.

Each fast layer computes what its plain PyTorch counterpart computes (tests/test_blocks.py checks values and
gradients against it) and has a line in benchmarks/benchmark.py --blocks that measures what it saves. While
torch.export traces a model (as torch.onnx's exporter does), each runs its plain version, so the exported graph
holds standard operators only.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval


def conv_bn(in_channels, out_channels, kernel_size, stride=1, dilation=1, groups=1):
    """A bias-free convolution that keeps the size (up to the stride), then BatchNorm: a pair fold_batchnorm folds."""
    padding = dilation * (kernel_size // 2)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def conv_bn_relu(in_channels, out_channels, kernel_size, stride=1, dilation=1, groups=1):
    conv, bn = conv_bn(in_channels, out_channels, kernel_size, stride, dilation, groups)
    return nn.Sequential(conv, bn, nn.ReLU(inplace=True))


def pad_to_multiple(x, multiple):
    """Zero-pad H and W at the bottom/right up to a multiple, so a network of that stride takes any input size."""
    height, width = x.shape[-2:]
    # Rounded up as multiple * ceil(size / multiple): in an export, where the sizes are symbols, this form keeps
    # the shape expressions simple (ResNet34_Unet exports in about half the time of the form with two modulos).
    pad_h = (height + multiple - 1) // multiple * multiple - height
    pad_w = (width + multiple - 1) // multiple * multiple - width
    if not torch.compiler.is_exporting() and pad_h == 0 and pad_w == 0:  # an exported graph takes every size
        return x
    return F.pad(x, (0, pad_w, 0, pad_h))


class _ConvTranspose2x2Function(torch.autograd.Function):
    """F.conv_transpose2d with kernel 2 and stride 2, whose backward is written as two matrix products."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return F.conv_transpose2d(x, weight, bias, stride=2)

    @staticmethod
    def backward(ctx, grad):
        # Each output pixel (2i + a, 2j + b) is x[:, :, i, j] @ weight[:, :, a, b], so with the rows of x as
        # pixels and the columns of grad as (a, b, out channel), both gradients are one matrix product each.
        # Under autocast the forward ran in grad's (lower) precision; the products do too, as autograd's would.
        x, weight = ctx.saved_tensors
        n, c, h, w = x.shape
        out_channels = weight.shape[1]
        grad = grad.permute(0, 2, 3, 1).reshape(n, h, 2, w, 2, out_channels).transpose(2, 3)
        grad = grad.reshape(n * h * w, 4 * out_channels)
        kernel = weight.to(grad.dtype).permute(0, 2, 3, 1).reshape(c, 4 * out_channels)
        grad_x = torch.mm(grad, kernel.t()).view(n, h, w, c).permute(0, 3, 1, 2)
        pixels = x.to(grad.dtype).permute(0, 2, 3, 1).reshape(n * h * w, c)
        grad_weight = torch.mm(pixels.t(), grad).view(c, 2, 2, out_channels).permute(0, 3, 1, 2)
        grad_bias = grad.sum(dim=0, dtype=weight.dtype).view(4, out_channels).sum(dim=0)
        return grad_x.to(x.dtype), grad_weight.to(weight.dtype), grad_bias.to(weight.dtype)


class ConvTranspose2x2(nn.ConvTranspose2d):
    """nn.ConvTranspose2d(kernel_size=2, stride=2) (same parameters and outputs) with a faster CPU backward.

    oneDNN computes this layer's gradients for channels_last inputs about 2x slower than two matrix products do.
    """

    def __init__(self, in_channels, out_channels):
        super().__init__(in_channels, out_channels, kernel_size=2, stride=2)

    def forward(self, x):
        if (not torch.compiler.is_exporting() and x.device.type == "cpu"
                and x.is_contiguous(memory_format=torch.channels_last)):
            return _ConvTranspose2x2Function.apply(x, self.weight, self.bias)
        return super().forward(x)


class _MeanMaxFunction(torch.autograd.Function):
    """(mean, amax) of x over dims, keeping them; the gradient is autograd's (ties at the maximum share it)."""

    @staticmethod
    def forward(ctx, x, dims):
        # PyTorch's CPU max-reduction is not vectorised for bf16/fp16: reducing a float32 copy is ~3x faster.
        source = x.float() if x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16) else x
        peak = source.amax(dim=dims, keepdim=True).to(x.dtype)
        ctx.save_for_backward(x, peak)
        ctx.dims = dims
        return source.mean(dim=dims, keepdim=True).to(x.dtype), peak

    @staticmethod
    def backward(ctx, grad_mean, grad_peak):
        # Autograd's own backward for the pair expands, converts and accumulates several full-size tensors; this
        # one writes the input gradient in one pass, which makes CBAM about 2x faster to train on the CPU.
        x, peak = ctx.saved_tensors
        is_peak = torch.eq(x, peak, out=torch.empty_like(x))  # a float 0/1 mask: no bool-to-float conversions
        ties = is_peak.sum(dim=ctx.dims, keepdim=True)
        grad = is_peak.mul_(grad_peak / ties).add_(grad_mean, alpha=peak.numel() / x.numel())
        return grad, None


def mean_and_max(x, dims):
    """(x.mean(dims, keepdim=True), x.amax(dims, keepdim=True)), with a one-pass backward."""
    if torch.compiler.is_exporting():
        return x.mean(dims, keepdim=True), x.amax(dims, keepdim=True)
    return _MeanMaxFunction.apply(x, dims)


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
