"""The report's ResNet34+U-Net: a ResNet34 encoder, a 1x1 bridge, 32-channel decoder blocks with CBAM."""
import torch
import torch.nn as nn

from models.unet import ConvTranspose2x2, pad_to_multiple


def conv_bn_relu(in_channels, out_channels, kernel_size):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """ResNet basic block; the identity path is projected (1x1 conv + BN) only when stride > 1."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride > 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet34Encoder(nn.Module):
    """torchvision's resnet34 without avgpool/fc; attribute names match it so its weights load 1:1."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(64, 64, blocks=3, stride=1)
        self.layer2 = self._stage(64, 128, blocks=4, stride=2)
        self.layer3 = self._stage(128, 256, blocks=6, stride=2)
        self.layer4 = self._stage(256, 512, blocks=3, stride=2)

    @staticmethod
    def _stage(in_channels, out_channels, blocks, stride):
        layers = [ResidualBlock(in_channels, out_channels, stride)]
        layers += [ResidualBlock(out_channels, out_channels) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x):
        """Return the outputs of layer1..layer4 (strides 4, 8, 16, 32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            features.append(x)
        return features


class MeanMax(torch.autograd.Function):
    """(mean, amax) of x over dims, keeping them; the gradient is autograd's (ties at the maximum share it).

    Autograd's own backward for the pair expands, converts and accumulates several full-size tensors; this one
    writes the input gradient in one pass, which makes CBAM about 2x faster to train on the CPU.
    """

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
        x, peak = ctx.saved_tensors
        is_peak = torch.eq(x, peak, out=torch.empty_like(x))  # a float 0/1 mask: no bool-to-float conversions
        ties = is_peak.sum(dim=ctx.dims, keepdim=True)
        grad = is_peak.mul_(grad_peak / ties).add_(grad_mean, alpha=peak.numel() / x.numel())
        return grad, None


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel attention, then spatial attention."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=False),
        )
        self.spatial = nn.Conv2d(2, 1, kernel_size=7, padding=3, bias=False)

    def forward(self, x):
        avg, peak = MeanMax.apply(x, (2, 3))
        # The shared MLP runs once over both descriptors stacked: about half the operators of two calls, and
        # operator launches, not arithmetic, bound a GPU step at small batches.
        from_avg, from_peak = self.mlp(torch.cat([avg, peak])).chunk(2)
        x = x * torch.sigmoid(from_avg + from_peak)
        maps = torch.cat(MeanMax.apply(x, (1,)), dim=1)
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
