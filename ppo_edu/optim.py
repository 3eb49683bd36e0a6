"""The Adam both PPO trainers use (lesson 4's CartPole agent, lesson 6's language model)."""

from __future__ import annotations

import torch


def adam(parameters, lr: float) -> torch.optim.Adam:
    """Adam with eps 1e-5 (as in the PPO implementations), with the fused kernel where torch has one
    for the parameters' device (TRL's default optimizer is fused too). Unfused, Adam runs ~10 small
    operations per tensor: on the tiny GPT-2 on a 2-core CPU about a tenth of a PPO step's time.
    ``parameters`` may be a generator: it is listed once, so the fallback gets them too."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, eps=1e-5, fused=True)
    # torch without fused Adam (TypeError), or one that refuses the parameters' device when the
    # optimizer is made (RuntimeError). torch 2.13 checks the device at the first step instead;
    # it has fused Adam for the CPU, CUDA and MPS, the devices this course runs on.
    except (RuntimeError, TypeError):
        return torch.optim.Adam(parameters, lr=lr, eps=1e-5)
