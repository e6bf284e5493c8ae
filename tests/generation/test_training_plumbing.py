"""Shared training plumbing: the time budget every loop stops on."""

from __future__ import annotations

import torch

from generation.training import DistContext, budget_spent


def test_budget_is_spent_only_past_the_limit_and_never_without_one():
    alone = DistContext(rank=0, world_size=1, device=torch.device("cpu"))
    assert budget_spent(61.0, 1.0, alone)
    assert not budget_spent(59.0, 1.0, alone)
    assert not budget_spent(1e9, None, alone)
