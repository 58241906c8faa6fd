import pytest
import torch

from device import autocast, choose_device, grad_scaler
from errors import ProjectError


def test_auto_picks_a_device_and_a_missing_one_is_an_error(monkeypatch):
    assert choose_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto").type in ("mps", "cpu")
    with pytest.raises(ProjectError, match="no cuda device"):
        choose_device("cuda")


def test_mixed_precision_is_bf16_on_the_cpu_and_needs_no_loss_scaling():
    cpu = torch.device("cpu")
    with autocast(cpu, True):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(cpu, False):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32
    assert not grad_scaler(cpu, True).is_enabled()
