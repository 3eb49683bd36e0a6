"""Shapes that used to broadcast to a wrong result, or fail deep inside torch with an error that
names no argument (found by auditing the package against STYLE.md's "functions validate
[shapes] with a clear error")."""

import pytest
import torch

from ppo_edu.objectives import zero_padding
from ppo_edu.rlhf.generation import response_mask_from_eos
from ppo_edu.rlhf.kl import expected_term_gradient, sequence_kl


def test_zero_padding_refuses_a_mask_that_would_broadcast():
    # a (3, 1) mask with a (3,) tensor gave a (3, 3) table
    with pytest.raises(ValueError, match=r"shape mismatch: tensors\[0\] has shape \(3,\) but mask has \(3, 1\)"):
        zero_padding(torch.ones(3, 1), torch.arange(3.0))
    (kept,) = zero_padding(torch.tensor([1, 0, 1]), torch.tensor([1.0, float("inf"), 3.0]))
    assert kept.tolist() == [1.0, 0.0, 3.0]


def test_sequence_kl_names_the_shape_it_needs():
    with pytest.raises(ValueError, match=r"kl and mask must have shape \(B, R\).*got \(5,\)"):
        sequence_kl(torch.ones(5), torch.ones(5))  # was IndexError: Dimension out of range
    assert sequence_kl(torch.ones(2, 3), torch.tensor([[1, 1, 0], [1, 0, 0]])).tolist() == [2.0, 1.0]


def test_response_mask_from_eos_names_the_shape_it_needs():
    with pytest.raises(ValueError, match=r"response_ids must have shape \(B, R\).*got \(3,\)"):
        response_mask_from_eos(torch.tensor([5, 0, 7]), 0)  # was IndexError inside cumsum
    assert response_mask_from_eos(torch.tensor([[5, 0, 7]]), 0).tolist() == [[1, 1, 0]]


def test_expected_term_gradient_refuses_a_reference_over_other_outcomes():
    def k2(logprobs, ref_logprobs):
        return 0.5 * (logprobs - ref_logprobs) ** 2

    # a one-outcome reference broadcast to pi's three outcomes and returned a gradient
    with pytest.raises(ValueError, match="shape mismatch"):
        expected_term_gradient(k2, torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0.0]))
    assert expected_term_gradient(k2, torch.zeros(3), torch.zeros(3)).abs().max() == 0
