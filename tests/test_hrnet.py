import pytest
import torch
import torch.nn.functional as F

import models.hrnet as hrnet
from conftest import randomize_batchnorm_statistics
from models import build_model


def parameters(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_of_the_backbone_and_the_head():
    model = build_model("HRNet")
    assert parameters(model) == 3_934_702
    assert parameters(model.head) == 73_982  # 270 -> 270 1x1 conv + BN, 270 -> 2 classifier


def test_the_stages_are_the_authors_w18_small_v2():
    model = build_model("HRNet")
    assert len(model.layer1) == 2 and model.layer1[0].conv3.out_channels == 256
    for stage, modules, widths in ((model.stage2, 1, [18, 36]), (model.stage3, 3, [18, 36, 72]),
                                   (model.stage4, 2, [18, 36, 72, 144])):
        assert len(stage) == modules
        for module in stage:
            assert [branch[0].conv1.out_channels for branch in module.branches] == widths
            assert [len(branch) for branch in module.branches] == [2] * len(widths)


def test_branches_run_at_strides_4_8_16_and_32():
    with torch.no_grad():
        features = build_model("HRNet").eval().features(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in features] == [(18, 16, 24), (36, 8, 12), (72, 4, 6), (144, 2, 3)]


def test_the_backbone_is_timms_hrnet_w18_small_v2_with_the_segmentation_codes_bilinear_fusion(monkeypatch):
    """timm's hrnet_w18_small_v2 has the same weights, tensor for tensor; it fuses with nearest-neighbour upsampling
    (the authors' classification code), which our fusion matches when switched to it."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = build_model("HRNet").eval()
    randomize_batchnorm_statistics(model)
    reference = timm.create_model("hrnet_w18_small_v2", pretrained=False, features_only=True,
                                  feature_location="").eval()
    reference.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("head.")})
    monkeypatch.setattr(hrnet, "upsample_to", lambda x, size: F.interpolate(x, size=size, mode="nearest"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for ours, theirs in zip(model.features(x), reference(x)[1:]):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
