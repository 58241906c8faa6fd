import math
from types import SimpleNamespace

import pytest
import torch

from optimization import build_optimizer, build_scheduler, cosine_factor, step_scheduler

CPU = torch.device("cpu")


def recipe(**changes):
    return SimpleNamespace(**{"learning_rate": 1e-3, "weight_decay": 0.0, "schedule": "plateau", "epochs": 5,
                              "warmup_epochs": 0, "lr_patience": 2, **changes})


def learning_rates(args, dice=0.5):
    """The learning rate each epoch of a run trains with."""
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2))], args, CPU)
    scheduler = build_scheduler(optimizer, args)
    rates = []
    for _ in range(args.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        step_scheduler(scheduler, dice)
    return rates


def test_the_report_recipe_is_adam_with_a_plateau_schedule_that_halves_after_patience():
    args = recipe()
    assert type(build_optimizer([torch.nn.Parameter(torch.zeros(1))], args, CPU)) is torch.optim.Adam
    assert learning_rates(args) == pytest.approx([1e-3, 1e-3, 1e-3, 1e-3, 5e-4])


def test_weight_decay_selects_adamw():
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], recipe(weight_decay=0.05), CPU)
    assert type(optimizer) is torch.optim.AdamW and optimizer.param_groups[0]["weight_decay"] == 0.05


def test_cosine_warms_up_linearly_then_falls_by_half_a_cosine_without_reaching_zero():
    rates = learning_rates(recipe(schedule="cosine", warmup_epochs=2, epochs=6))
    after = [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert rates == pytest.approx([1e-3 / 3, 2e-3 / 3, *(1e-3 * f for f in after)])
    assert learning_rates(recipe(schedule="cosine", epochs=3)) == pytest.approx([1e-3, 0.75e-3, 0.25e-3])
    assert cosine_factor(7, 8, 0) > 0


def test_a_cosine_schedule_resumes_from_its_state_dict():
    args = recipe(schedule="cosine", warmup_epochs=1, epochs=6)
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], args, CPU)
    scheduler = build_scheduler(optimizer, args)
    for _ in range(3):
        optimizer.step()
        step_scheduler(scheduler, 0.0)
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    resumed_optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], args, CPU)
    resumed = build_scheduler(resumed_optimizer, args)
    resumed_optimizer.load_state_dict(state["optimizer"])
    resumed.load_state_dict(state["scheduler"])
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(learning_rates(args)[3])
    resumed_optimizer.step()
    step_scheduler(resumed, 0.0)
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(learning_rates(args)[4])
