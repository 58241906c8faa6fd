"""The report's U-Net: same-padding DoubleConv blocks 64 -> 1024, ConvTranspose upsampling."""
import torch
import torch.nn as nn

from models.blocks import ConvTranspose2x2, pad_to_multiple


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
    """2x2 transposed convolution halving the channels, concatenate the skip (skip first), DoubleConv."""

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
