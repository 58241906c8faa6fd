"""ResNet34 as an encoder (He et al., 2016), laid out like torchvision's resnet34 so its weights load 1:1."""
import torch.nn as nn

from checkpoint import load_checkpoint
from errors import ProjectError


class ResidualBlock(nn.Module):
    """ResNet basic block; the identity path is projected (1x1 conv + BN) when the stride or the width changes."""

    def __init__(self, in_channels, out_channels, stride=1, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride > 1 or in_channels != out_channels:
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
    """torchvision's resnet34 without avgpool/fc; attribute names match it so its weights load 1:1.

    With output_stride=16, layer4 keeps the resolution of layer3 and dilates its convolutions by 2 instead of
    striding (the atrous ResNet of DeepLab); the weights are the same tensors either way.
    """

    def __init__(self, output_stride=32):
        super().__init__()
        if output_stride not in (16, 32):
            raise ValueError(f"output_stride must be 16 or 32, not {output_stride}")
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(64, 64, blocks=3, stride=1)
        self.layer2 = self._stage(64, 128, blocks=4, stride=2)
        self.layer3 = self._stage(128, 256, blocks=6, stride=2)
        dilated = output_stride == 16
        self.layer4 = self._stage(256, 512, blocks=3, stride=1 if dilated else 2, dilation=2 if dilated else 1)

    @staticmethod
    def _stage(in_channels, out_channels, blocks, stride, dilation=1):
        layers = [ResidualBlock(in_channels, out_channels, stride, dilation)]
        layers += [ResidualBlock(out_channels, out_channels, dilation=dilation) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x):
        """Return the outputs of layer1..layer4 (strides 4, 8, 16 and 32, or 16 again with output_stride=16)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            features.append(x)
        return features


def load_encoder_weights(encoder, source):
    """Load a torchvision-format resnet34 state dict ('imagenet' downloads it) into the encoder; fc.* is ignored."""
    state = imagenet_resnet34_state() if source == "imagenet" else resnet34_state_from_file(source)
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    expected = encoder.state_dict()
    wrong = sorted(set(expected) ^ set(state)) + sorted(
        key for key in set(expected) & set(state) if expected[key].shape != state[key].shape)
    if wrong:
        raise ProjectError(
            f"The encoder weights from {source} are not a torchvision resnet34 state dict: "
            f"{len(wrong)} tensors are missing, extra or of another shape, such as {wrong[:3]}."
        )
    encoder.load_state_dict(state)


def imagenet_resnet34_state():
    import torchvision

    weights = torchvision.models.ResNet34_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=True)
    except OSError as error:
        raise ProjectError(
            f"Could not download the ImageNet ResNet34 weights from {weights.url} ({error}); "
            "on a machine without internet, download that file elsewhere and pass its path instead, "
            "as --encoder_weights /path/to/resnet34-b627a593.pth."
        ) from None


def resnet34_state_from_file(path):
    state = load_checkpoint(path, what="--encoder_weights")
    if not isinstance(state, dict):
        raise ProjectError(f"--encoder_weights {path} holds a {type(state).__name__}, not a resnet34 state dict.")
    return state
