import pytest
import torch
import torchinfo
import torchvision

from checkpoint import save_checkpoint
from conftest import SAMPLE, randomize_batchnorm_statistics
from data import NORMALIZATION, normalize_images
from errors import ProjectError
from models import ARCHITECTURES, build_model, canonical_model_type, load_trained_model, model_record, \
    prepare_for_inference
from models.resnet34_unet import CBAM
from oxford_pet import load_dataset

MODELS = list(ARCHITECTURES)
NEW_MODELS = ["DeepLabV3Plus", "HRNet"]


@pytest.mark.parametrize("model_type, use_cbam, params, mult_adds", [
    ("Unet", True, 31_031_810, "54.65"),
    ("ResNet34_Unet", True, 21_890_670, "6.92"),
    ("ResNet34_Unet", False, 21_889_314, "6.91"),
    pytest.param("DeepLabV3Plus", True, 22_441_906, "8.15", marks=pytest.mark.slow),
    pytest.param("HRNet", True, 3_934_702, "2.38", marks=pytest.mark.slow),
])
def test_parameter_count_and_mult_adds_at_256_match_the_readme(model_type, use_cbam, params, mult_adds):
    stats = torchinfo.summary(build_model(model_type, use_cbam=use_cbam), input_size=(1, 3, 256, 256), verbose=0)
    assert stats.total_params == params
    assert f"{stats.total_mult_adds / 1e9:.2f}" == mult_adds


@pytest.mark.parametrize("model_type", MODELS)
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


@pytest.mark.parametrize("spelling, name", [
    ("Unet", "Unet"), ("UNet", "Unet"), ("unet", "Unet"), ("ResNet34_Unet", "ResNet34_Unet"),
    ("Resnet34_Unet", "ResNet34_Unet"), ("ResNet34_UNet", "ResNet34_Unet"), ("deeplabv3plus", "DeepLabV3Plus"),
    ("DeepLabV3PLUS", "DeepLabV3Plus"), ("hrnet", "HRNet"), (" HRNet ", "HRNet"),
])
def test_any_letter_case_of_a_model_name_is_accepted(spelling, name):
    assert canonical_model_type(spelling) == name


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(ValueError, match="Unet, ResNet34_Unet, DeepLabV3Plus, HRNet"):
        build_model("resnet50_unet")


@pytest.mark.parametrize("model_type", MODELS)
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


@pytest.mark.parametrize("model_type", ["Unet", "HRNet"])
def test_encoder_weights_for_a_model_without_an_encoder_are_refused(model_type):
    with pytest.raises(ProjectError, match=f"ResNet34 encoder \\(ResNet34_Unet, DeepLabV3Plus\\) only; {model_type}"):
        build_model(model_type, encoder_weights="imagenet")


@pytest.mark.parametrize("model_type", ["Unet", "DeepLabV3Plus", "HRNet"])
def test_no_cbam_for_a_model_without_cbam_is_refused(model_type):
    with pytest.raises(ProjectError, match=f"--no_cbam applies to .*ResNet34_Unet.* only; {model_type} has no CBAM"):
        build_model(model_type, use_cbam=False)


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


def test_cbam_matches_its_textbook_formula_with_one_call_of_the_shared_mlp():
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


@pytest.mark.parametrize("model_type", MODELS)
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


@pytest.mark.parametrize("model_type", [
    "Unet", "ResNet34_Unet", *(pytest.param(name, marks=pytest.mark.slow) for name in NEW_MODELS)])
def test_compile_traces_the_whole_model_as_one_graph(model_type):
    """`--compile` fuses the models' elementwise work only when nothing in them (a .item(), a Python branch on a
    tensor, an untraceable autograd Function) breaks the graph."""
    model = build_model(model_type).to(memory_format=torch.channels_last)
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last))
    assert explanation.graph_count == 1 and not explanation.break_reasons, explanation.break_reasons


@pytest.mark.parametrize("model_type", MODELS)
def test_prepared_model_is_channels_last_in_eval_mode_with_every_batchnorm_folded_and_the_same_outputs(model_type):
    torch.manual_seed(0)
    model = build_model(model_type)
    randomize_batchnorm_statistics(model)
    x = torch.randn(1, 3, 50, 38)
    with torch.inference_mode():
        expected = model.eval()(x)
        prepared = prepare_for_inference(model, torch.device("cpu"))
        assert not prepared.training
        assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in prepared.modules())
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in prepared.parameters() if p.dim() == 4)
        torch.testing.assert_close(prepared(x.contiguous(memory_format=torch.channels_last)), expected,
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("model_type", NEW_MODELS)
def test_a_checkpoint_rebuilds_its_model_from_the_record_alone(model_type, tmp_path):
    torch.manual_seed(0)
    model = build_model(model_type)
    randomize_batchnorm_statistics(model)
    path = tmp_path / f"{model_type}_bs8_best_model.pth"
    save_checkpoint({"model": model.state_dict(), "model_record": model_record(model_type, True, 32),
                     "args": {"batch_size": 8}}, path)
    loaded, checkpoint = load_trained_model(path, torch.device("cpu"))
    assert type(loaded) is type(model) and checkpoint["model_record"]["model_type"] == model_type
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x.contiguous(memory_format=torch.channels_last)), model.eval()(x),
                                   rtol=1e-4, atol=1e-4)
    with pytest.raises(ProjectError, match="has no CBAM"):
        load_trained_model(path, torch.device("cpu"), use_cbam=False)


def bundled_batch(count=4, size=32):
    """The first `count` training pairs of the bundled sample at size x size: normalised images, int64 masks."""
    dataset = load_dataset(SAMPLE, "train", None, size, download=False)
    samples = [dataset[index] for index in range(count)]
    images = torch.stack([torch.from_numpy(sample["image"]) for sample in samples])
    masks = torch.stack([torch.from_numpy(sample["mask"]) for sample in samples]).long()
    return normalize_images(images, **NORMALIZATION), masks


@pytest.mark.parametrize("model_type", MODELS)
def test_a_few_adam_steps_on_bundled_images_lower_the_loss(model_type):
    torch.manual_seed(0)
    images, masks = bundled_batch()
    model = build_model(model_type)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(images), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
