"""How the policy loss averages its per-token terms: every token alike (the default), each
response alike (GRPO's objective as written), or a constant (Dr. GRPO)."""

import pytest
import torch

from ppo_edu.objectives import clipped_surrogate
from ppo_edu.rlhf import PolicyWithValueHead, RLHFConfig, RLHFTrainer, frozen_reference
from ppo_edu.rlhf import trainer as trainer_module
from ppo_edu.rlhf.losses import LOSS_AGGREGATIONS, token_weights
from ppo_edu.rlhf.toy import eos_prone_lm

MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])


def test_token_mean_weighs_every_real_token_alike():
    weights = token_weights(MASK, "token-mean")
    assert torch.equal(weights, MASK / 7)


def test_response_mean_weighs_each_response_alike_so_a_token_by_one_over_its_length():
    weights = token_weights(MASK, "response-mean")
    torch.testing.assert_close(weights.sum(1), torch.full((3,), 1 / 3))
    assert weights[2, 0] == 4 * weights[0, 0]  # a 1-token response's token: four times a 4-token one's
    assert torch.equal(weights == 0, MASK == 0)


def test_constant_weighs_every_token_by_one_over_responses_times_the_length_limit():
    weights = token_weights(MASK, "constant", max_new_tokens=5)
    torch.testing.assert_close(weights, MASK / 15)  # 3 responses x 5 tokens
    # the same weight in a minibatch of short responses as in one of long ones
    assert token_weights(MASK[2:], "constant", 5)[0, 0] == token_weights(MASK[:1], "constant", 5)[0, 0]


@pytest.mark.parametrize("mask, aggregation, max_new_tokens, message", [
    (MASK, "sequence-mean", None, "aggregation must be one of"),
    (MASK[0], "token-mean", None, r"mask must be \(B, R\)"),
    (torch.tensor([[1, 1], [0, 0]]), "response-mean", None, "response 1 has no real token"),
    (MASK, "constant", None, "divides by max_new_tokens"),
    (MASK, "constant", 3, "at least the longest response"),
])
def test_token_weights_refuse_what_they_cannot_weigh(mask, aggregation, max_new_tokens, message):
    with pytest.raises(ValueError, match=message):
        token_weights(mask, aggregation, max_new_tokens)


def _surrogate_inputs():
    g = torch.Generator().manual_seed(0)
    logprobs = (-torch.rand(3, 4, generator=g)).requires_grad_(True)
    old = -torch.rand(3, 4, generator=g)
    advantages = torch.randn(3, 4, generator=g)
    return logprobs, old, advantages


def test_weights_turn_the_clipped_surrogates_mean_into_their_weighted_sum():
    logprobs, old, advantages = _surrogate_inputs()
    weights = token_weights(MASK, "response-mean")
    got = clipped_surrogate(logprobs, old, advantages, 0.2, mask=MASK, weights=weights)
    ratio = torch.exp(logprobs - old)
    terms = torch.minimum(ratio * advantages, ratio.clamp(0.8, 1.2) * advantages)
    expected = sum(terms[b, :n].mean() for b, n in enumerate((4, 2, 1))) / 3
    torch.testing.assert_close(got.objective, expected)
    plain = clipped_surrogate(logprobs, old, advantages, 0.2, mask=MASK)
    assert got.clip_fraction == plain.clip_fraction  # the diagnostic is still the share of real tokens
    torch.testing.assert_close(clipped_surrogate(logprobs, old, advantages, 0.2, mask=MASK,
                                                 weights=token_weights(MASK, "token-mean")).objective,
                               plain.objective)


@pytest.mark.parametrize("weights, message", [
    (-token_weights(MASK, "token-mean"), "weights must be >= 0"),
    (torch.full((3, 4), 0.1), r"0 on padding \(mask 0\); index \(1, 2\)"),
    (torch.full((3, 3), 0.1), r"weights has \(3, 3\)"),
    (torch.where(MASK.bool(), float("nan"), 0.0), "weights contains NaN or inf"),
])
def test_weights_that_would_train_on_padding_or_flip_the_objective_are_refused(weights, message):
    logprobs, old, advantages = _surrogate_inputs()
    with pytest.raises(ValueError, match=message):
        clipped_surrogate(logprobs, old, advantages, 0.2, mask=MASK, weights=weights)


def test_the_config_refuses_an_unknown_aggregation():
    assert RLHFConfig().loss_aggregation == "token-mean"
    with pytest.raises(ValueError, match="loss_aggregation must be one of"):
        RLHFConfig(loss_aggregation="mean")


def _trainer(tok, aggregation, max_new_tokens):
    policy = PolicyWithValueHead(eos_prone_lm(tok))
    config = RLHFConfig(batch_size=8, mini_batch_size=4, ppo_epochs=1, max_new_tokens=max_new_tokens,
                        loss_aggregation=aggregation, seed=0)
    return RLHFTrainer(policy, frozen_reference(policy), tok, lambda texts: torch.randn(len(texts)),
                       ["the movie", "a film", "i loved", "not bad"], config)


@pytest.mark.parametrize("aggregation", LOSS_AGGREGATIONS[1:])
def test_the_trainer_weighs_each_minibatchs_tokens_as_configured(tok, aggregation, monkeypatch):
    seen = []

    def spy(*args, weights=None, **kwargs):
        seen.append((kwargs["mask"], weights))
        return clipped_surrogate(*args, weights=weights, **kwargs)

    monkeypatch.setattr(trainer_module, "clipped_surrogate", spy)
    _trainer(tok, aggregation, max_new_tokens=6).step()
    assert len(seen) == 2  # one epoch of two minibatches
    lengths = torch.cat([mask.sum(1) for mask, _ in seen])
    assert len(set(lengths.tolist())) > 1, "responses of one length would weigh alike however averaged"
    for mask, weights in seen:
        torch.testing.assert_close(weights, token_weights(mask, aggregation, 6))


def test_with_one_token_per_response_every_aggregation_takes_the_same_step(tok):
    """One token each: a token is a response, so the three averages are one (for "constant",
    max_new_tokens = 1 is also every response's length)."""
    after = []
    for aggregation in LOSS_AGGREGATIONS:
        trainer = _trainer(tok, aggregation, max_new_tokens=1)
        trainer.step()
        after.append(torch.cat([p.detach().flatten() for p in trainer.policy.parameters()]))
    torch.testing.assert_close(after[1], after[0])
    torch.testing.assert_close(after[2], after[0])


def test_with_responses_of_different_lengths_the_aggregations_take_different_steps(tok):
    after = []
    for aggregation in ("token-mean", "response-mean"):
        trainer = _trainer(tok, aggregation, max_new_tokens=6)
        trainer.step()
        after.append(torch.cat([p.detach().flatten() for p in trainer.policy.parameters()]))
    assert (after[0] - after[1]).abs().max() > 1e-6
