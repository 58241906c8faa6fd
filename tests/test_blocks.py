import pytest
import torch

from conftest import randomize_batchnorm_statistics
from models import blocks, build_model
from models.blocks import ConvTranspose2x2, fold_batchnorm, mean_and_max, pad_to_multiple


def test_padding_reaches_the_next_multiple_at_the_bottom_right_only():
    x = torch.ones(1, 2, 5, 7)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (1, 2, 8, 8)
    assert padded[..., :5, :7].eq(1).all() and padded.sum() == x.sum()
    assert pad_to_multiple(padded, 4) is padded


def test_cbam_pooling_gradient_matches_autograd():
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    for dims in ((2, 3), (1,)):
        assert torch.autograd.gradcheck(lambda t: mean_and_max(t, dims), (x,))


def pool_like_cbam_and_compare_gradients(x, dims):
    """mean_and_max's (mean, peak) of x; asserts its input gradient equals autograd's for random output gradients."""
    ours, autograd = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    mean, peak = mean_and_max(ours, dims)
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


def test_fast_transposed_convolution_matches_pytorch_in_value_and_gradient():
    torch.manual_seed(0)
    layer = ConvTranspose2x2(6, 4).double()
    x = torch.randn(2, 6, 5, 3, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(layer, (x,))
    reference = torch.nn.functional.conv_transpose2d(x, layer.weight, layer.bias, stride=2)
    torch.testing.assert_close(layer(x), reference)


def test_fast_transposed_convolution_trains_under_cpu_autocast_like_pytorch():
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


class PaddedUpsampleAndPool(torch.nn.Module):
    """The three export-sensitive pieces in one: padding to a multiple, ConvTranspose2x2 and mean_and_max."""

    def __init__(self):
        super().__init__()
        self.up = ConvTranspose2x2(3, 2)

    def forward(self, x):
        y = self.up(pad_to_multiple(x, 4))
        mean, peak = mean_and_max(y, (1,))
        return y * mean + peak


def test_while_exporting_the_fast_layers_run_their_plain_versions_and_sizes_stay_dynamic(monkeypatch):
    torch.manual_seed(0)
    net = PaddedUpsampleAndPool().to(memory_format=torch.channels_last)

    def fail(*args):
        raise AssertionError("a custom autograd Function ran while exporting")

    with monkeypatch.context() as patch:
        for function in (blocks._ConvTranspose2x2Function, blocks._MeanMaxFunction):
            patch.setattr(function, "apply", fail)
        dynamic = torch.export.Dim.DYNAMIC
        program = torch.export.export(net, (torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last),),
                                      dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic},))
    for shape in ((2, 3, 8, 8), (3, 3, 5, 7)):  # 8x8 needs no padding, 5x7 does
        x = torch.randn(*shape)
        torch.testing.assert_close(program.module()(x), net(x))
