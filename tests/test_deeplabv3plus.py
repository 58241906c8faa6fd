import torch
import torchvision

from models import build_model
from models.deeplabv3plus import ASPP
from models.resnet34 import ResNet34Encoder


def test_parameter_count():
    assert sum(p.numel() for p in build_model("DeepLabV3Plus").parameters()) == 22_441_906


def test_torchvision_resnet34_weights_load_one_to_one_into_the_dilated_encoder(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet34()
    path = tmp_path / "resnet34.pth"
    torch.save(reference.state_dict(), path)
    encoder = build_model("DeepLabV3Plus", encoder_weights=str(path)).encoder
    expected = {key: value for key, value in reference.state_dict().items() if not key.startswith("fc.")}
    loaded = encoder.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)


def test_output_stride_16_dilates_layer4_instead_of_striding_it():
    encoder = ResNet34Encoder(output_stride=16).eval()
    with torch.no_grad():
        features = encoder(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in features] == [(64, 16, 24), (128, 8, 12), (256, 4, 6), (512, 4, 6)]
    convs = [m for m in encoder.layer4.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 6 and all(c.stride == (1, 1) and c.dilation == (2, 2) == c.padding for c in convs)
    plain = ResNet34Encoder()
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in encoder.state_dict().items()}


def test_aspp_has_a_1x1_branch_one_separable_branch_per_rate_and_image_pooling():
    aspp = ASPP(512, 256, rates=(6, 12, 18))
    depthwise = [branch[0][0] for branch in aspp.branches[1:4]]
    assert [conv.dilation for conv in depthwise] == [(6, 6), (12, 12), (18, 18)]
    assert all(conv.groups == 512 for conv in depthwise)
    assert len(aspp.branches) == 5 and aspp.project[0].in_channels == 5 * 256
    with torch.no_grad():
        assert aspp.eval()(torch.randn(2, 512, 5, 7)).shape == (2, 256, 5, 7)


def test_a_batch_of_one_image_trains_through_the_image_pooling_branch():
    model = build_model("DeepLabV3Plus").train()
    model(torch.randn(1, 3, 32, 32)).sum().backward()
    assert model.aspp.branches[-1].conv.weight.grad is not None
