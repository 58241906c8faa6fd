"""HRNetV2 for segmentation (Wang et al., TPAMI 2020) in its W18-Small-v2 configuration.

The module names are those of the authors' code (HRNet-Semantic-Segmentation's lib/models/seg_hrnet.py, and timm's
hrnet), so a backbone state dict of theirs has the same keys and shapes.
"""
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.blocks import conv_bn, conv_bn_relu, pad_to_multiple
from models.resnet34 import ResidualBlock


class Stage(NamedTuple):
    modules: int  # high-resolution modules in a row
    blocks: tuple  # BASIC blocks per branch
    widths: tuple  # channels per branch, highest resolution first


# The authors' experiments/cityscapes/seg_hrnet_w18_small_v2_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484.yaml; its
# stage 1 is STAGE1_BLOCKS BOTTLENECK blocks of 64 channels (256 out), and every stage fuses by SUM.
STAGE1_BLOCKS = 2
W18_SMALL_V2 = (Stage(1, (2, 2), (18, 36)),
                Stage(3, (2, 2, 2), (18, 36, 72)),
                Stage(2, (2, 2, 2, 2), (18, 36, 72, 144)))


def upsample_to(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1, 3x3, 1x1 to 4x the width; the identity path is projected when the width changes."""

    expansion = 4

    def __init__(self, in_channels, width):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None if in_channels == out_channels else conv_bn(in_channels, out_channels, 1)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class Transition(nn.ModuleList):
    """Into a stage with one branch more: each branch keeps its resolution (a 3x3 conv + BN + ReLU where its width
    changes), and the new branch, at half the lowest resolution, comes from the lowest by a strided 3x3 conv."""

    def __init__(self, in_widths, out_widths):
        layers = [nn.Identity() if a == b else conv_bn_relu(a, b, 3) for a, b in zip(in_widths, out_widths)]
        # In a Sequential of its own, as in the authors' code (which can chain several), so the weights' names match.
        layers.append(nn.Sequential(conv_bn_relu(in_widths[-1], out_widths[-1], 3, stride=2)))
        super().__init__(layers)

    def forward(self, xs):
        return [layer(x) for layer, x in zip(self, [*xs, xs[-1]])]


class HighResolutionModule(nn.Module):
    """One branch of BASIC blocks per resolution, then the fusion: each branch gets the sum of every branch brought
    to its resolution and width."""

    def __init__(self, widths, blocks):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(ResidualBlock(width, width) for _ in range(count))) for width, count in zip(widths, blocks))
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse_layer(widths, source, target) for source in range(len(widths)))
            for target in range(len(widths)))
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _fuse_layer(widths, source, target):
        """From a lower resolution, a 1x1 conv + BN (upsampled in forward); from a higher one, a strided 3x3 conv
        per halving, the last without ReLU."""
        if source == target:
            return nn.Identity()
        if source > target:
            return conv_bn(widths[source], widths[target], 1)
        halvings = [conv_bn_relu(widths[source], widths[source], 3, stride=2) for _ in range(target - source - 1)]
        return nn.Sequential(*halvings, conv_bn(widths[source], widths[target], 3, stride=2))

    def forward(self, xs):
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        fused = []
        for target, layers in enumerate(self.fuse_layers):
            total = xs[target]
            for source, (layer, x) in enumerate(zip(layers, xs)):
                if source < target:
                    total = total + layer(x)
                elif source > target:
                    total = total + upsample_to(layer(x), xs[target].shape[-2:])
            fused.append(self.relu(total))
        return fused


def high_resolution_stage(stage):
    return nn.Sequential(*(HighResolutionModule(stage.widths, stage.blocks) for _ in range(stage.modules)))


class HRNetV2Head(nn.Module):
    """Every branch upsampled to the highest resolution and concatenated, 1x1 conv + BN + ReLU, 1x1 classifier."""

    def __init__(self, widths, num_classes):
        super().__init__()
        self.fuse = conv_bn_relu(sum(widths), sum(widths), 1)
        self.classifier = nn.Conv2d(sum(widths), num_classes, 1)

    def forward(self, xs):
        size = xs[0].shape[-2:]
        return self.classifier(self.fuse(torch.cat([xs[0], *(upsample_to(x, size) for x in xs[1:])], dim=1)))


class HRNet(nn.Module):
    """A stride-4 stem and bottleneck stage, then stages of parallel branches at strides 4, 8, 16 and 32, a new
    branch per stage, fused repeatedly; the HRNetV2 head at stride 4, upsampled to the input size. Any input size
    (padded to a multiple of 32)."""

    stride = 32

    def __init__(self, num_classes=2, stages=W18_SMALL_V2):
        super().__init__()
        stage2, stage3, stage4 = stages
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(Bottleneck(64, 64), *(Bottleneck(256, 64) for _ in range(STAGE1_BLOCKS - 1)))
        self.transition1 = Transition((64 * Bottleneck.expansion,), stage2.widths)
        self.stage2 = high_resolution_stage(stage2)
        self.transition2 = Transition(stage2.widths, stage3.widths)
        self.stage3 = high_resolution_stage(stage3)
        self.transition3 = Transition(stage3.widths, stage4.widths)
        self.stage4 = high_resolution_stage(stage4)
        self.head = HRNetV2Head(stage4.widths, num_classes)

    def features(self, x):
        """The four branches' outputs (strides 4, 8, 16, 32) for an input whose sides are multiples of 32."""
        x = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        xs = self.stage2(self.transition1([self.layer1(x)]))
        xs = self.stage3(self.transition2(xs))
        return self.stage4(self.transition3(xs))

    def forward(self, x):
        height, width = x.shape[-2:]
        x = pad_to_multiple(x, self.stride)
        return upsample_to(self.head(self.features(x)), x.shape[-2:])[..., :height, :width]
