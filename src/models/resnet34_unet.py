"""The report's ResNet34+U-Net: a ResNet34 encoder, a 1x1 bridge, 32-channel decoder blocks with CBAM."""
import torch
import torch.nn as nn

from models.blocks import ConvTranspose2x2, conv_bn_relu, mean_and_max, pad_to_multiple
from models.resnet34 import ResNet34Encoder


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., 2018): channel attention, then spatial attention."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=False),
        )
        self.spatial = nn.Conv2d(2, 1, kernel_size=7, padding=3, bias=False)

    def forward(self, x):
        avg, peak = mean_and_max(x, (2, 3))
        # The shared MLP runs once over both descriptors stacked: about half the operators of two calls, and
        # operator launches, not arithmetic, bound a GPU step at small batches. Split by slicing at the batch size:
        # chunk(2) would fix the batch size of an exported graph.
        mixed = self.mlp(torch.cat([avg, peak]))
        x = x * torch.sigmoid(mixed[:x.shape[0]] + mixed[x.shape[0]:])
        maps = torch.cat(mean_and_max(x, (1,)), dim=1)
        return x * torch.sigmoid(self.spatial(maps))


class DecoderBlock(nn.Module):
    """Two (3x3 conv -> BN -> ReLU), then CBAM when enabled."""

    def __init__(self, in_channels, out_channels, use_cbam=True):
        super().__init__()
        self.conv = nn.Sequential(
            conv_bn_relu(in_channels, out_channels, 3),
            conv_bn_relu(out_channels, out_channels, 3),
        )
        self.cbam = CBAM(out_channels) if use_cbam else nn.Identity()

    def forward(self, x):
        return self.cbam(self.conv(x))


class ResNet34UNet(nn.Module):
    """ResNet34 encoder + U-Net decoder; any input size (padded to a multiple of 32)."""

    stride = 32

    def __init__(self, num_classes=2, use_cbam=True, width=32):
        super().__init__()
        self.encoder = ResNet34Encoder()
        self.bridge = conv_bn_relu(512, 256, 1)
        self.center = DecoderBlock(512 + 256, width, use_cbam)
        skip_channels = [256, 128, 64, 0, 0]
        self.ups = nn.ModuleList(ConvTranspose2x2(width, width) for _ in skip_channels)
        self.decoders = nn.ModuleList(DecoderBlock(width + c, width, use_cbam) for c in skip_channels)
        self.head = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, x):
        height, width = x.shape[-2:]
        x = pad_to_multiple(x, self.stride)
        stage1, stage2, stage3, stage4 = self.encoder(x)
        x = self.center(torch.cat([self.bridge(stage4), stage4], dim=1))
        skips = [stage3, stage2, stage1, None, None]
        for up, decoder, skip in zip(self.ups, self.decoders, skips):
            x = up(x)
            x = decoder(x if skip is None else torch.cat([x, skip], dim=1))
        return self.head(x)[..., :height, :width]
