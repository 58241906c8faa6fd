"""DeepLabV3+ (Chen et al., ECCV 2018) on this project's ResNet34 encoder at output stride 16."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.blocks import conv_bn_relu, pad_to_multiple
from models.resnet34 import ResNet34Encoder


def separable_conv_bn_relu(in_channels, out_channels, dilation=1):
    """Depthwise-separable 3x3 convolution with BatchNorm and ReLU after the depthwise and the pointwise step, as the
    paper adds them (its section 3.2, following MobileNet)."""
    return nn.Sequential(
        conv_bn_relu(in_channels, in_channels, 3, dilation=dilation, groups=in_channels),
        conv_bn_relu(in_channels, out_channels, 1),
    )


class ImagePooling(nn.Module):
    """ASPP's image-level features: global average pooling, 1x1 conv + BN + ReLU, back to the map's size."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()  # not in place: with BatchNorm folded away, its input is the broadcast view

    def forward(self, x):
        pooled = self.conv(x.mean((2, 3), keepdim=True))
        # Normalising the broadcast map gives the values of normalising the pooled vector, and lets a batch of one
        # image train: BatchNorm needs more than one value per channel.
        return self.relu(self.bn(pooled.expand(-1, -1, *x.shape[-2:])))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 branch, a separable 3x3 branch per atrous rate and image pooling,
    concatenated and projected by a 1x1 conv."""

    def __init__(self, in_channels, out_channels=256, rates=(6, 12, 18)):
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_relu(in_channels, out_channels, 1)])
        self.branches.extend(separable_conv_bn_relu(in_channels, out_channels, rate) for rate in rates)
        self.branches.append(ImagePooling(in_channels, out_channels))
        self.project = conv_bn_relu(out_channels * len(self.branches), out_channels, 1)

    def forward(self, x):
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class DeepLabV3Plus(nn.Module):
    """ResNet34 at output stride 16 and ASPP; the decoder joins the ASPP features, upsampled 4x, with the stride-4
    features projected to 48 channels, refines them with two separable 3x3 convs and upsamples the classes 4x.
    Any input size (padded to a multiple of 16)."""

    stride = 16

    def __init__(self, num_classes=2, width=256, low_level_width=48):
        super().__init__()
        self.encoder = ResNet34Encoder(output_stride=16)
        self.aspp = ASPP(512, width)
        self.low_level = conv_bn_relu(64, low_level_width, 1)
        self.refine = nn.Sequential(
            separable_conv_bn_relu(width + low_level_width, width),
            separable_conv_bn_relu(width, width),
        )
        self.head = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, x):
        height, width = x.shape[-2:]
        x = pad_to_multiple(x, self.stride)
        stage1, _, _, stage4 = self.encoder(x)
        context = F.interpolate(self.aspp(stage4), size=stage1.shape[-2:], mode="bilinear", align_corners=False)
        x = self.refine(torch.cat([context, self.low_level(stage1)], dim=1))
        x = F.interpolate(self.head(x), scale_factor=4, mode="bilinear", align_corners=False)
        return x[..., :height, :width]
