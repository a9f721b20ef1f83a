import math

import torch
from torch import nn

from aeframe.cells.budget import Budget
from aeframe.training.lr_find import range_test, valley
from aeframe.contract.protocol import study_schedule

from techniques import train_cell


def test_valley_picks_the_middle_of_the_longest_descent():
    lrs = [10 ** (-7 + i * 0.1) for i in range(40)]
    # Flat, then a steady descent over points 10..29, then a blow-up. The run starts on the plateau
    # (point 0 is above every later point of the descent) and ends at its bottom (point 29).
    losses = [1.0] * 10 + [1.0 - 0.04 * k for k in range(1, 21)] + [0.2 * 2**k for k in range(10)]
    assert valley(lrs, losses) == lrs[0 + 29 // 3 + 29 // 6]


def test_valley_ignores_noise_that_breaks_a_run_into_pieces():
    losses = [5, 4, 4.5, 3, 3.2, 2, 1, 1.5, 0.5, 3, 9]
    lrs = list(range(len(losses)))
    # Longest decreasing subsequence: 5, 4, 3, 2, 1, 0.5 (points 0 to 8).
    assert valley(lrs, losses) == lrs[0 + 8 // 3 + 8 // 6]


def test_range_test_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 3, 1), nn.Sigmoid())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randint(0, 256, (256, 3, 8, 8), dtype=torch.uint8)
    schedule = study_schedule()
    test = range_test(model, nn.functional.mse_loss, schedule, [list(model.parameters())], [1.0], images,
                      torch.Generator().manual_seed(0), steps=40)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert 1e-7 <= test.suggestion <= 10 and test.seconds > 0
    assert test.lrs == sorted(test.lrs) and len(test.lrs) == len(test.losses) <= 40
    assert all(math.isfinite(x) for x in test.losses)


def test_lr_find_cells_record_the_rate_and_its_cost_apart(registry, workspace):
    from aeframe.execution.environment import device_info, versions
    from aeframe.planning.plan import plan_cells, resolve_dataset, resolve_technique

    record = train_cell("baseline", registry, workspace, budget=Budget(epochs=3), lr="find")
    assert record.status == "done" and record.config.lr == "find"
    assert len(record.stats["lr_found"]) == 1 and record.stats["lr_find_seconds"] > 0
    # The range test is work outside the budget: the Outside Budget column counts it.
    assert record.stats["outside_budget_seconds"] == record.stats["lr_find_seconds"]
    assert "preparation" not in record.stats  # no technique reported any of its own
    assert record.config.protocol.phases[1].max_lr == [1e-3]  # the plan; the test replaced it
    cpu = torch.device("cpu")
    args = ([resolve_technique("baseline", registry)], [resolve_dataset("shapes", registry)], 1, Budget(epochs=1),
            device_info(cpu), versions(), registry)
    assert plan_cells(*args, "find")[0].keyed("f").key != plan_cells(*args, "study")[0].keyed("f").key
