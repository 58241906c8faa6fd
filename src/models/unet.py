"""The report's U-Net: same-padding DoubleConv blocks 64 -> 1024, ConvTranspose upsampling."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def pad_to_multiple(x, multiple):
    """Zero-pad H and W at the bottom/right up to a multiple; return the padded tensor."""
    height, width = x.shape[-2:]
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    if pad_h == 0 and pad_w == 0:
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
        if x.device.type == "cpu" and x.is_contiguous(memory_format=torch.channels_last):
            return _ConvTranspose2x2Function.apply(x, self.weight, self.bias)
        return super().forward(x)


class DoubleConv(nn.Module):
    """(3x3 conv, padding 1, bias -> ReLU) twice."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.block(x)


class Up(nn.Module):
    """ConvTranspose2d halving the channels, concatenate the skip (skip first), DoubleConv."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.up = ConvTranspose2x2(in_channels, in_channels // 2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x, skip):
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """U-Net with four 2x2 max-pool downsamplings; any input size (padded to a multiple of 16)."""

    stride = 16

    def __init__(self, in_channels=3, num_classes=2):
        super().__init__()
        widths = [64, 128, 256, 512]
        self.encoders = nn.ModuleList()
        for width in widths:
            self.encoders.append(DoubleConv(in_channels, width))
            in_channels = width
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(512, 1024)
        self.decoders = nn.ModuleList(Up(width * 2, width) for width in reversed(widths))
        self.head = nn.Conv2d(64, num_classes, kernel_size=1)

    def forward(self, x):
        height, width = x.shape[-2:]
        x = pad_to_multiple(x, self.stride)
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for decoder, skip in zip(self.decoders, reversed(skips)):
            x = decoder(x, skip)
        return self.head(x)[..., :height, :width]
