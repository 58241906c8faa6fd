import pytest
import torch
import torchinfo
import torchvision

from models import build_model, canonical_model_type, fold_batchnorm, prepare_for_inference
from utils import ProjectError


@pytest.mark.parametrize("model_type, use_cbam, params, mult_adds", [
    ("Unet", True, 31_031_810, "54.65"),
    ("ResNet34_Unet", True, 21_890_670, "6.92"),
    ("ResNet34_Unet", False, 21_889_314, "6.91"),
])
def test_parameter_count_and_mult_adds_match_the_report(model_type, use_cbam, params, mult_adds):
    stats = torchinfo.summary(build_model(model_type, use_cbam=use_cbam), input_size=(1, 3, 256, 256), verbose=0)
    assert stats.total_params == params
    assert f"{stats.total_mult_adds / 1e9:.2f}" == mult_adds


@pytest.mark.parametrize("model_type", ["Unet", "ResNet34_Unet"])
@pytest.mark.parametrize("size", [(64, 64), (50, 38), (33, 97)])
def test_output_has_input_size_and_two_classes(model_type, size):
    model = build_model(model_type).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 2, *size)


def test_cbam_switch_changes_the_decoder():
    with_cbam = build_model("ResNet34_Unet", use_cbam=True)
    without = build_model("ResNet34_Unet", use_cbam=False)
    assert any("cbam" in name for name, _ in with_cbam.named_parameters())
    assert not any("cbam" in name for name, _ in without.named_parameters())


@pytest.mark.parametrize("spelling", ["Unet", "UNet", "unet", "ResNet34_Unet", "Resnet34_Unet", "ResNet34_UNet"])
def test_report_spellings_are_accepted(spelling):
    assert canonical_model_type(spelling) in {"Unet", "ResNet34_Unet"}


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(ValueError, match="ResNet34_Unet.*Unet|Unet.*ResNet34_Unet"):
        build_model("resnet50_unet")


@pytest.mark.parametrize("model_type", ["Unet", "ResNet34_Unet"])
def test_backward_gives_finite_gradients_to_every_parameter(model_type):
    torch.manual_seed(0)
    model = build_model(model_type)
    logits = model(torch.randn(2, 3, 64, 64))
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 2, (2, 64, 64))).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_encoder_matches_torchvision_resnet34_layer_by_layer(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet34().eval()
    path = tmp_path / "resnet34.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("ResNet34_Unet", encoder_weights=str(path)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = model.encoder(x)
        y = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        for stage, feature in zip((reference.layer1, reference.layer2, reference.layer3, reference.layer4), ours):
            y = stage(y)
            torch.testing.assert_close(feature, y)


def test_encoder_weights_for_unet_are_refused():
    with pytest.raises(ProjectError, match="ResNet34_Unet only"):
        build_model("Unet", encoder_weights="imagenet")


def test_encoder_weights_file_that_is_not_a_resnet34(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(ProjectError, match="not a torchvision resnet34"):
        build_model("ResNet34_Unet", encoder_weights=str(path))
    with pytest.raises(ProjectError, match="no such file"):
        build_model("ResNet34_Unet", encoder_weights=str(tmp_path / "missing.pth"))


def test_imagenet_download_failure_says_how_to_pass_a_file(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models.ResNet34_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(ProjectError, match="--encoder_weights /path/to"):
        build_model("ResNet34_Unet", encoder_weights="imagenet")


def test_cbam_pooling_gradient_matches_autograd():
    from models.resnet34_unet import MeanMax

    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    for dims in ((2, 3), (1,)):
        assert torch.autograd.gradcheck(lambda t: MeanMax.apply(t, dims), (x,))


def pool_like_cbam_and_compare_gradients(x, dims):
    """MeanMax's (mean, peak) of x; asserts its input gradient equals autograd's for random output gradients."""
    from models.resnet34_unet import MeanMax

    ours, autograd = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    mean, peak = MeanMax.apply(ours, dims)
    grads = torch.randn_like(mean), torch.randn_like(peak)
    torch.autograd.backward((mean, peak), grads)
    torch.autograd.backward((autograd.mean(dims, keepdim=True), autograd.amax(dims, keepdim=True)), grads)
    torch.testing.assert_close(ours.grad, autograd.grad)
    return mean.detach(), peak.detach()


def test_cbam_pooling_shares_the_gradient_among_ties_like_autograd():
    x = torch.relu(torch.randn(2, 4, 3, 3, dtype=torch.float64))
    x[0, 1] = 0  # a dead channel: every pixel ties for its maximum
    x[1, :, 0, 0] = 0  # a pixel where every channel ties
    for dims in ((2, 3), (1,)):
        pool_like_cbam_and_compare_gradients(x, dims)


def test_cbam_pooling_in_bfloat16_matches_autograd():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 5).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    for dims in ((2, 3), (1,)):
        mean, peak = pool_like_cbam_and_compare_gradients(x, dims)
        assert mean.dtype == peak.dtype == torch.bfloat16
        assert torch.equal(peak, x.amax(dims, keepdim=True))
        torch.testing.assert_close(mean, x.float().mean(dims, keepdim=True).bfloat16())


def test_cbam_matches_its_textbook_formula_with_one_call_of_the_shared_mlp():
    from models.resnet34_unet import CBAM

    torch.manual_seed(0)
    cbam = CBAM(32).double()
    calls = []
    cbam.mlp.register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(2, 32, 6, 5, dtype=torch.float64)
    ours, textbook = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out = cbam(ours)
    avg, peak = textbook.mean((2, 3), keepdim=True), textbook.amax((2, 3), keepdim=True)
    gated = textbook * torch.sigmoid(cbam.mlp(avg) + cbam.mlp(peak))
    maps = torch.cat([gated.mean(1, keepdim=True), gated.amax(1, keepdim=True)], dim=1)
    expected = gated * torch.sigmoid(cbam.spatial(maps))
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(ours.grad, textbook.grad)
    assert len(calls) == 1 + 2  # one call in CBAM's forward, two in the textbook formula


def test_fast_transposed_convolution_matches_pytorch_in_value_and_gradient():
    from models.unet import ConvTranspose2x2

    torch.manual_seed(0)
    layer = ConvTranspose2x2(6, 4).double()
    x = torch.randn(2, 6, 5, 3, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(layer, (x,))
    reference = torch.nn.functional.conv_transpose2d(x, layer.weight, layer.bias, stride=2)
    torch.testing.assert_close(layer(x), reference)


def test_fast_transposed_convolution_trains_under_cpu_autocast_like_pytorch():
    from models.unet import ConvTranspose2x2

    torch.manual_seed(0)
    ours = ConvTranspose2x2(8, 4)
    reference = torch.nn.ConvTranspose2d(8, 4, 2, stride=2)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    grads = []
    for layer in (ours, reference):
        inputs = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(inputs)
        assert out.dtype == torch.bfloat16
        out.float().square().sum().backward()
        grads.append([inputs.grad, layer.weight.grad, layer.bias.grad])
    for mine, theirs in zip(*grads):
        assert mine.dtype == torch.float32
        torch.testing.assert_close(mine, theirs, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("model_type", ["Unet", "ResNet34_Unet"])
def test_channels_last_autocast_training_step_on_the_cpu(model_type):
    torch.manual_seed(0)
    model = build_model(model_type).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    torch.nn.functional.cross_entropy(logits.float(), torch.randint(0, 2, (2, 32, 32))).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.dtype == torch.float32, name
        assert torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize("model_type", ["Unet", "ResNet34_Unet"])
def test_compile_traces_the_whole_model_as_one_graph(model_type):
    """`--compile` fuses the models' elementwise work only when nothing in them (a .item(), a Python branch on a
    tensor, an untraceable autograd Function) breaks the graph."""
    model = build_model(model_type).to(memory_format=torch.channels_last)
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last))
    assert explanation.graph_count == 1 and not explanation.break_reasons, explanation.break_reasons


def randomize_batchnorm_statistics(model):
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)


@pytest.mark.parametrize("use_cbam", [True, False])
def test_folding_batchnorm_keeps_the_outputs_and_removes_every_batchnorm(use_cbam):
    torch.manual_seed(0)
    model = build_model("ResNet34_Unet", use_cbam=use_cbam)
    randomize_batchnorm_statistics(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = model.eval()(x)
        folded = fold_batchnorm(model)
        assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in folded.modules())
        torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-4)


def test_folding_batchnorm_refuses_a_model_in_training_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(build_model("ResNet34_Unet"))


def test_prepared_model_is_channels_last_in_eval_mode_with_the_same_outputs():
    torch.manual_seed(0)
    model = build_model("ResNet34_Unet")
    randomize_batchnorm_statistics(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        expected = model.eval()(x)
        prepared = prepare_for_inference(model, torch.device("cpu"))
        assert not prepared.training
        assert prepared.encoder.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(prepared(x.contiguous(memory_format=torch.channels_last)), expected,
                                   rtol=1e-4, atol=1e-4)
