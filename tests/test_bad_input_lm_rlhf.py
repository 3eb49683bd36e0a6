"""Bad input to the language-model and RLHF helpers (lessons 5-6): each case here used to run
on silently with a wrong result, or to fail deep inside torch or transformers naming nothing."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ppo_edu.lm.models import TINY_LM_DIR
from ppo_edu.rlhf import (
    PolicyWithValueHead,
    RLHFConfig,
    RLHFTrainer,
    clipped_value_loss,
    encode_prompts,
    frozen_reference,
    full_kl,
    generate,
    logprobs_from_logits,
    response_logprobs,
    sequence_kl,
    token_rewards,
)
from ppo_edu.rlhf.best_of_n import sample_and_score
from ppo_edu.rlhf.evaluation import distinct_n, evaluate_policy
from ppo_edu.rlhf.logprobs import entropy_from_logits
from ppo_edu.rlhf.shaping import text_prefix_potentials
from ppo_edu.rlhf.toy import toy_reward_model


def zero_reward(texts):
    return torch.zeros(len(texts))


# --------------------------------------------------------------------------- one prompt string


def test_a_single_prompt_string_is_not_read_as_a_list_of_characters(tok, lm):
    # evaluate_policy("The movie") sampled nine one-character prompts, sample_and_score returned a
    # (N, 9) table, a trainer's rollout a batch of nine: no error anywhere
    single = "got a single str"
    with pytest.raises(TypeError, match=single):
        evaluate_policy(lm, frozen_reference(lm), tok, "the movie", zero_reward, max_new_tokens=2)
    with pytest.raises(TypeError, match=single):
        sample_and_score(lm, tok, "the movie", zero_reward, num_samples=1, max_new_tokens=2)
    policy = PolicyWithValueHead(copy.deepcopy(lm))
    trainer = RLHFTrainer(policy, frozen_reference(policy), tok, zero_reward, ["the movie", "a film"],
                          RLHFConfig(batch_size=2, mini_batch_size=2, max_new_tokens=2))
    with pytest.raises(TypeError, match=single):
        trainer.rollout("the movie")
    gen = trainer.rollout(["the movie", "a film"]).generation
    with pytest.raises(ValueError, match="1 prompts for 2 responses"):  # zip dropped the second
        trainer.decode(["the movie"], gen)
    with pytest.raises(TypeError, match=single):
        text_prefix_potentials(zero_reward, tok, "ab", gen)  # two characters for two responses
    with pytest.raises(TypeError, match=single):
        distinct_n("the movie was great")  # was nan


# --------------------------------------------------------------------------- temperature


@pytest.mark.parametrize("temperature", [-1.0, 0, 0.0, float("nan"), float("inf"), True])
def test_the_log_prob_and_kl_helpers_refuse_a_temperature_that_is_not_positive(tok, lm, temperature):
    # T = -1 gave the log-probs of the reversed distribution (the least likely token the
    # likeliest), T = 0 NaN, both without an error
    logits, tokens = torch.randn(2, 3, 5), torch.randint(0, 5, (2, 3))
    match = "temperature must be a finite number > 0"
    with pytest.raises(ValueError, match=match):
        logprobs_from_logits(logits, tokens, temperature)
    with pytest.raises(ValueError, match=match):
        entropy_from_logits(logits, temperature)
    with pytest.raises(ValueError, match=match):
        full_kl(logits, torch.randn(2, 3, 5), torch.ones(2, 3), temperature)
    ids = torch.tensor([[5, 6, 7, 8]])
    with pytest.raises(ValueError, match=match):
        response_logprobs(lm, ids, torch.ones_like(ids), 2, temperature)
    with pytest.raises(ValueError, match=match):
        PolicyWithValueHead(copy.deepcopy(lm))(ids, torch.ones_like(ids), 2, temperature)


# --------------------------------------------------------------------------- KL, rewards, value loss


def test_sequence_kl_and_full_kl_refuse_a_mask_that_would_broadcast_or_weigh(tok):
    kl = torch.rand(2, 3)
    for mask in (torch.ones(2, 1), torch.ones(3)):  # summed all of every row, no error
        with pytest.raises(ValueError, match="shape mismatch"):
            sequence_kl(kl, mask)
    with pytest.raises(ValueError, match="mask must be boolean or hold only 0 and 1, got 0.5"):
        sequence_kl(kl, torch.full((2, 3), 0.5))  # counted as 1
    logits, ref_logits = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    for mask in (torch.ones(2, 1), torch.ones(3)):
        with pytest.raises(ValueError, match=r"mask has shape .* need \(2, 3\)"):
            full_kl(logits, ref_logits, mask)
    with pytest.raises(ValueError, match="got 0.5"):
        full_kl(logits, ref_logits, torch.full((2, 3), 0.5))  # halved the KL
    with pytest.raises(ValueError, match="shape mismatch"):
        full_kl(logits, torch.randn(2, 3, 6), torch.ones(2, 3))
    # padding gets 0 whatever its logits hold (a NaN there times the mask's 0 was NaN)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    bad = torch.where(mask.bool()[..., None], logits, float("nan"))
    out = full_kl(bad, ref_logits, mask)
    assert torch.isfinite(out).all() and (out[~mask.bool()] == 0).all()


def test_token_rewards_refuse_a_negative_beta_and_keep_padding_at_zero():
    scores, kl, mask = torch.tensor([1.0, 2.0]), torch.rand(2, 3), torch.tensor([[1, 1, 0], [1, 0, 0]])
    # a negative beta turned the KL penalty into a bonus for leaving the reference, silently
    for beta in (-0.2, float("nan"), float("inf"), True, "0.1"):
        with pytest.raises(ValueError, match="kl_coef must be a finite number >= 0"):
            token_rewards(scores, kl, beta, mask)
    with pytest.raises(ValueError, match=r"scores contains NaN or inf \(first at index \(0,\)"):
        token_rewards(torch.tensor([float("nan"), 1.0]), kl, 0.1, mask)
    with pytest.raises(TypeError, match="scores must be a torch.Tensor, got list"):
        token_rewards([1.0, 2.0], kl, 0.1, mask)
    # "padding carries no reward": an inf or NaN KL there (a learner's kl_fn) used to make it NaN
    noisy = torch.where(mask.bool(), kl, float("inf"))
    rewards = token_rewards(scores, noisy, 0.1, mask)
    assert (rewards[~mask.bool()] == 0).all()
    assert torch.equal(rewards, token_rewards(scores, kl * mask, 0.1, mask))
    assert torch.equal(token_rewards(scores, kl, torch.tensor(0.1), mask), token_rewards(scores, kl, 0.1, mask))


def test_the_value_loss_refuses_a_clip_range_that_is_not_positive():
    values, old, returns, mask = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3), torch.ones(2, 3)
    # clamp(x, 0.2, -0.2) is -0.2 everywhere: the loss was computed against V_old - 0.2, no error
    for clip in (-0.2, 0, float("nan"), True, None):
        with pytest.raises(ValueError, match="clip_range must be a number > 0"):
            clipped_value_loss(values, old, returns, mask, clip)
    unclipped, _ = clipped_value_loss(values, old, returns, mask, float("inf"))  # inf: no clipping
    assert torch.isclose(unclipped, 0.5 * ((values - returns) ** 2).mean())


# --------------------------------------------------------------------------- the config


@pytest.mark.parametrize("field, value, message", [
    ("whiten_rewards", "False", "whiten_rewards must be True or False, got 'False'"),  # ran as True
    ("adaptive_kl", "no", "adaptive_kl must be True or False"),
    ("add_bos", 0, "add_bos must be True or False, got 0"),
    ("epsilon", True, "epsilon must be a real number, got True"),  # ran as 1.0
    ("temperature", True, "temperature must be a real number"),
    ("learning_rate", "1e-4", "learning_rate must be a real number, got '1e-4'"),  # unnamed TypeError
    ("gamma", "1", "gamma must be a real number"),
    ("lam", None, "lam must be a real number, got None"),
])
def test_the_rlhf_config_names_a_value_of_the_wrong_kind(field, value, message):
    with pytest.raises(ValueError, match=message):
        RLHFConfig(**{field: value})
    RLHFConfig(learning_rate=np.float32(1e-4), adaptive_kl=np.bool_(False), init_kl_coef=0)  # numpy is fine


# --------------------------------------------------------------------------- models


def test_a_reference_on_another_device_or_with_a_value_head_is_named_before_sampling(tok, lm):
    policy = PolicyWithValueHead(copy.deepcopy(lm))
    elsewhere = frozen_reference(policy).to("meta")  # failed in the first step ("meta tensors")
    with pytest.raises(ValueError, match="the reference model is on meta but the policy is on cpu"):
        RLHFTrainer(policy, elsewhere, tok, zero_reward, ["the movie", "a film"], RLHFConfig(batch_size=2, mini_batch_size=2))
    with pytest.raises(ValueError, match="the reference model is on meta"):
        evaluate_policy(lm, elsewhere, tok, ["the movie"], zero_reward, max_new_tokens=2)
    wrapped = copy.deepcopy(policy).eval().requires_grad_(False)  # "got an unexpected keyword 'position_ids'"
    with pytest.raises(TypeError, match="got a PolicyWithValueHead: pass ppo_edu.rlhf.frozen_reference"):
        RLHFTrainer(policy, wrapped, tok, zero_reward, ["the movie", "a film"], RLHFConfig(batch_size=2, mini_batch_size=2))
    with pytest.raises(TypeError, match="got a PolicyWithValueHead"):
        evaluate_policy(lm, wrapped, tok, ["the movie"], zero_reward, max_new_tokens=2)


def test_a_value_head_goes_on_a_language_model_only(tok, lm):
    policy = PolicyWithValueHead(copy.deepcopy(lm))
    with pytest.raises(TypeError, match="already a PolicyWithValueHead"):  # "has no attribute 'config'"
        PolicyWithValueHead(policy)
    with pytest.raises(TypeError, match="needs a causal language model with an LM head.*"
                                        "GPT2ForSequenceClassification"):
        PolicyWithValueHead(toy_reward_model(tok))  # was accepted, failed in the first step


def test_a_language_model_is_not_taken_for_a_sentiment_classifier():
    # its classification head is missing from the checkpoint, so transformers started it at
    # random and the "reward" was noise (only a load report was printed)
    from ppo_edu.lm.reward import sentiment_reward_fn
    from ppo_edu.rlhf.setups import load_reward_fn

    with pytest.raises(ValueError, match="is not a trained sentiment classifier.*score.weight"):
        sentiment_reward_fn(str(TINY_LM_DIR))
    with pytest.raises(ValueError, match="is not a trained sentiment classifier"):
        load_reward_fn(str(TINY_LM_DIR))


# --------------------------------------------------------------------------- counts


def test_sampling_counts_are_whole_numbers_named_before_sampling(tok, lm):
    ref = frozen_reference(lm)
    for size in (0, -1, 1.5, True):  # "range() arg 3 must not be zero", "torch.cat(): expected a
        # non-empty list of Tensors", "'float' object cannot be interpreted as an integer"
        with pytest.raises(ValueError, match=f"batch_size must be an integer >= 1, got {size}"):
            evaluate_policy(lm, ref, tok, ["the movie"], zero_reward, max_new_tokens=2, batch_size=size)
        with pytest.raises(ValueError, match=f"batch_size must be an integer >= 1, got {size}"):
            sample_and_score(lm, tok, ["the movie"], zero_reward, num_samples=1, max_new_tokens=2,
                             batch_size=size)
    for n in (1.5, True):
        with pytest.raises(ValueError, match=f"num_samples must be an integer >= 1, got {n}"):
            sample_and_score(lm, tok, ["the movie"], zero_reward, num_samples=n, max_new_tokens=2)
    q, qm = encode_prompts(tok, ["the movie"], 64, 3)
    for n in (2.5, True):  # 2.5 failed after the first forward pass; True ran as 1
        with pytest.raises(ValueError, match=f"max_new_tokens must be an integer >= 1, got {n}"):
            encode_prompts(tok, ["the movie"], 64, n)
        with pytest.raises(ValueError, match=f"max_new_tokens must be an integer >= 1, got {n}"):
            generate(lm, q, qm, n, tok.eos_token_id, tok.pad_token_id)
        with pytest.raises(ValueError, match=f"max_new_tokens must be an integer >= 1, got {n}"):
            evaluate_policy(lm, ref, tok, ["the movie"], zero_reward, max_new_tokens=n)
    assert generate(lm, q, qm, np.int64(2), tok.eos_token_id, tok.pad_token_id).response_ids.shape == (1, 2)
