"""Bad input to the RLHF pieces fails early with an error that names it; -inf logits are handled.

Each test here failed before its fix: silently (integer advantages truncated to 0, a BOS from
add_bos="False", NaN from a masked vocabulary) or with an error from deep inside numpy or torch
that named nothing the caller passed."""

import numpy as np
import pytest
import torch

from ppo_edu.objectives import categorical_kl
from ppo_edu.rlhf import PolicyWithValueHead, RLHFConfig, RLHFTrainer, frozen_reference
from ppo_edu.rlhf.advantages import token_gae
from ppo_edu.rlhf.best_of_n import sample_and_score
from ppo_edu.rlhf.evaluation import evaluate_policy, opening_prompts
from ppo_edu.rlhf.generation import encode_prompts, generate
from ppo_edu.rlhf.kl import full_kl, kl_penalty, sequence_kl
from ppo_edu.rlhf.logprobs import entropy_from_logits, response_logprobs
from ppo_edu.rlhf.shaping import shape_rewards, text_prefix_potentials
from ppo_edu.rlhf.toy import eos_prone_lm, toy_lm, toy_reward_model, toy_tokenizer

PROMPTS = ["the movie", "a film", "i loved", "not bad", "the worst"]


def zeros_fn(texts):
    return torch.zeros(len(texts))


def make_trainer(tok, **overrides):
    settings = dict(batch_size=4, mini_batch_size=2, ppo_epochs=1, max_new_tokens=4, seed=0)
    policy = PolicyWithValueHead(eos_prone_lm(tok))
    return RLHFTrainer(policy, frozen_reference(policy), tok, zeros_fn, PROMPTS, RLHFConfig(**settings),
                       **overrides)


# -- 1. token_gae ----------------------------------------------------------------------------

def test_token_gae_with_integer_values_computes_in_floating_point():
    mask = torch.ones(2, 3, dtype=torch.long)
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.5, 0.0, 1.0]])
    advantages, returns = token_gae(rewards, torch.zeros_like(mask), mask, 1.0, 0.95)
    expected, expected_returns = token_gae(rewards, torch.zeros(2, 3), mask, 1.0, 0.95)
    assert advantages.dtype == torch.float32 and returns.dtype == torch.float32
    torch.testing.assert_close(advantages, expected, rtol=0, atol=0)
    torch.testing.assert_close(returns, expected_returns, rtol=0, atol=0)
    # integer rewards and values together: the default float type, not integer buffers
    integer, _ = token_gae(torch.ones(2, 3, dtype=torch.long), torch.zeros_like(mask), mask, 1.0, 0.95)
    assert integer.dtype == torch.get_default_dtype()
    torch.testing.assert_close(integer[0], torch.tensor([2.8525, 1.95, 1.0]))


def test_token_gae_in_float64_stays_float64():
    mask = torch.ones(1, 3)
    advantages, returns = token_gae(torch.ones(1, 3, dtype=torch.float64), torch.zeros(1, 3), mask)
    assert advantages.dtype == returns.dtype == torch.float64


@pytest.mark.parametrize("name, gamma, lam", [("gamma", "1.0", 0.95), ("lam", 1.0, True),
                                              ("gamma", True, 0.95), ("lam", 1.0, None)])
def test_token_gae_refuses_gamma_and_lam_that_are_not_real_numbers(name, gamma, lam):
    mask = torch.ones(1, 3)
    with pytest.raises(ValueError, match=f"{name} must be a real number"):
        token_gae(torch.ones(1, 3), torch.zeros(1, 3), mask, gamma, lam)


# -- 2. generate -----------------------------------------------------------------------------

@pytest.mark.parametrize("eos, pad, problem", [
    (None, "pad", "eos_token_id must be an integer token id, got None"),
    ("eos", None, "pad_token_id must be an integer token id, got None"),
    (True, "pad", "eos_token_id must be an integer token id, got True"),
    (10**6, "pad", "eos_token_id=1000000 is not a token of the model"),
    ("eos", -1, "pad_token_id=-1 is not a token of the model"),
])
def test_generate_refuses_token_ids_that_are_not_tokens_before_sampling(tok, lm, eos, pad, problem):
    eos = tok.eos_token_id if eos == "eos" else eos
    pad = tok.pad_token_id if pad == "pad" else pad
    q, qm = encode_prompts(tok, ["the movie", "a"], 64, 4)
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    with pytest.raises(ValueError, match=problem):
        generate(lm, q, qm, 4, eos, pad, generator=generator)
    assert torch.equal(generator.get_state(), state)  # refused before anything was drawn


def test_generate_blames_a_temperature_whose_division_overflows_not_the_weights(tok, lm):
    q, qm = encode_prompts(tok, ["the movie"], 64, 4)
    with pytest.raises(FloatingPointError, match="temperature=1e-39 overflow"):
        generate(lm, q, qm, 4, tok.eos_token_id, tok.pad_token_id, temperature=1e-39)


# -- 3. evaluate_policy and sample_and_score -------------------------------------------------

@pytest.fixture(scope="module")
def unresized():
    """A pad token added to the tokenizer after the model was built, without a resize."""
    tokenizer = toy_tokenizer(pad_token=None)
    lm = toy_lm(tokenizer)
    tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    return tokenizer, lm


def test_evaluation_and_best_of_n_refuse_a_tokenizer_larger_than_the_embedding(unresized):
    tokenizer, lm = unresized
    with pytest.raises(ValueError, match="the tokenizer has 301 tokens but the policy's embedding has 300"):
        evaluate_policy(lm, frozen_reference(lm), tokenizer, ["a", "the movie"], zeros_fn)
    with pytest.raises(ValueError, match="the tokenizer has 301 tokens but the policy's embedding has 300"):
        sample_and_score(lm, tokenizer, ["a", "the movie"], zeros_fn, num_samples=1)


def test_evaluation_refuses_a_reference_over_another_vocabulary(tok, lm):
    other = frozen_reference(toy_lm(toy_tokenizer(vocab_size=280)))
    with pytest.raises(ValueError, match="must share one vocabulary"):
        evaluate_policy(lm, other, tok, ["a"], zeros_fn)


@pytest.mark.parametrize("make", [
    lambda p: np.array(p), lambda p: (x for x in p), lambda p: dict.fromkeys(p).keys(), tuple,
], ids=["numpy", "generator", "keys", "tuple"])
def test_evaluation_and_best_of_n_take_any_iterable_of_prompts(tok, lm, make):
    prompts = ["the movie", "a film"]
    reference = frozen_reference(lm)
    expected = evaluate_policy(lm, reference, tok, prompts, zeros_fn, max_new_tokens=4)
    got = evaluate_policy(lm, reference, tok, make(prompts), zeros_fn, max_new_tokens=4)
    assert got.responses == expected.responses
    scores, _ = sample_and_score(lm, tok, make(prompts), zeros_fn, num_samples=2, max_new_tokens=4)
    assert scores.shape == (2, 2)
    assert sample_and_score(lm, tok, {"the movie"}, zeros_fn, num_samples=1, max_new_tokens=4)[0].shape == (1, 1)


def test_evaluation_and_best_of_n_name_a_prompt_that_is_not_a_string(tok, lm):
    with pytest.raises(TypeError, match=r"prompts\[1\] is of type int, not a string"):
        evaluate_policy(lm, frozen_reference(lm), tok, ["a", 3], zeros_fn)
    with pytest.raises(TypeError, match="got a single str"):
        sample_and_score(lm, tok, "the movie", zeros_fn)
    with pytest.raises(TypeError, match="prompts must be a list"):
        sample_and_score(lm, tok, 3, zeros_fn)


# -- 4. RLHFTrainer --------------------------------------------------------------------------

def test_the_trainer_refuses_a_config_that_is_not_an_rlhf_config(tok):
    policy = PolicyWithValueHead(eos_prone_lm(tok))
    for config in ({"batch_size": 4}, {}):  # {} was taken for "no config": the defaults
        with pytest.raises(TypeError, match="config must be an RLHFConfig"):
            RLHFTrainer(policy, frozen_reference(policy), tok, zeros_fn, PROMPTS, config)


@pytest.mark.parametrize("name", ["reward_fn", "judge_fn", "kl_fn", "gae_fn", "value_loss_fn", "potential_fn"])
def test_the_trainer_refuses_a_plugged_in_function_that_is_not_callable(tok, name):
    policy = PolicyWithValueHead(eos_prone_lm(tok))
    kwargs = {"reward_fn": zeros_fn, name: 3}
    with pytest.raises(TypeError, match=f"{name} must be a function"):
        RLHFTrainer(policy, frozen_reference(policy), tok, prompts=PROMPTS, config=RLHFConfig(batch_size=4, mini_batch_size=2),
                    **kwargs)


def _step_counting(trainer):
    calls = []
    step = trainer.optimizer.step
    trainer.optimizer.step = lambda *a, **k: (calls.append(1), step(*a, **k))[1]
    return calls


@pytest.mark.parametrize("value_loss_fn, problem", [
    (lambda v, old, ret, mask, clip: (v - ret) ** 2, r"value_loss_fn returned a loss of shape \(2, \d+\)"),
    (lambda v, old, ret, mask, clip: 0.5, "value_loss_fn must return the loss as a torch.Tensor"),
    (lambda v, old, ret, mask, clip: ((v - ret).pow(2).mean(), torch.ones(2)), "clip fraction of shape"),
    (lambda v, old, ret, mask, clip: ((v - ret).pow(2).mean(), 0.1, 0.2), "tuple of length 3"),
], ids=["unreduced", "float", "fraction", "triple"])
def test_a_bad_value_loss_is_named_before_any_gradient_step(tok, value_loss_fn, problem):
    trainer = make_trainer(tok)
    trainer.value_loss_fn = value_loss_fn
    calls = _step_counting(trainer)
    with pytest.raises((TypeError, ValueError), match=problem):
        trainer.step()
    assert calls == []


def test_a_bad_gae_output_is_named(tok):
    trainer = make_trainer(tok)
    trainer.gae_fn = lambda *args: token_gae(*args)[0]
    with pytest.raises(TypeError, match=r"gae_fn must return the pair \(advantages, returns\), got one Tensor"):
        trainer.step()
    trainer.gae_fn = lambda *args: tuple(t[:, :1] for t in token_gae(*args))
    with pytest.raises(ValueError, match=r"gae_fn returned advantages of shape \(4, 1\)"):
        trainer.step()
    trainer.gae_fn = lambda *args: (token_gae(*args)[0], [0.0])
    with pytest.raises(TypeError, match="gae_fn must return returns as a torch.Tensor"):
        trainer.step()


def test_a_bad_kl_output_is_named(tok):
    trainer = make_trainer(tok)
    trainer.kl_fn = lambda *args: kl_penalty(*args).sum(1)
    with pytest.raises(ValueError, match=r"kl_fn returned the per-token KL of shape \(4,\)"):
        trainer.step()


# -- 5. response_logprobs ----------------------------------------------------------------------

def test_response_logprobs_names_the_value_head_wrapper_and_a_reward_model(tok, lm):
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with pytest.raises(TypeError, match="got a PolicyWithValueHead: pass its .lm"):
        response_logprobs(PolicyWithValueHead(toy_lm(tok)), ids, torch.ones_like(ids), 2)
    with pytest.raises(TypeError, match="GPT2ForSequenceClassification, which has none"):
        response_logprobs(toy_reward_model(tok), ids, torch.ones_like(ids), 2)
    assert response_logprobs(lm, ids, torch.ones_like(ids), 2).shape == (1, 3)


# -- 6. silent coercions ---------------------------------------------------------------------

@pytest.mark.parametrize("add_bos", ["False", "no", 0, None])
def test_add_bos_must_be_a_bool(tok, lm, add_bos):
    with pytest.raises(ValueError, match="add_bos must be True or False"):
        encode_prompts(tok, ["a"], 64, 4, add_bos=add_bos)
    with pytest.raises(ValueError, match="add_bos must be True or False"):
        evaluate_policy(lm, frozen_reference(lm), tok, ["a"], zeros_fn, add_bos=add_bos)
    with pytest.raises(ValueError, match="add_bos must be True or False"):
        sample_and_score(lm, tok, ["a"], zeros_fn, add_bos=add_bos)
    assert encode_prompts(tok, ["a"], 64, 4, add_bos=np.bool_(False))[0].shape == (1, 1)


def test_opening_prompts_wants_whole_word_counts_and_a_list_of_texts():
    with pytest.raises(ValueError, match="min_words must be an integer number of words, got 2.5"):
        opening_prompts(["a b c d e f"], min_words=2.5)
    with pytest.raises(ValueError, match="max_words must be an integer"):
        opening_prompts(["a b c d e f"], max_words=4.0)
    with pytest.raises(TypeError, match="got a single str"):
        opening_prompts("a b c d e f")
    assert opening_prompts(np.array(["a b c d e f"]), min_words=np.int64(3), max_words=3) == ["a b c"]


@pytest.mark.parametrize("call, name", [
    (lambda: kl_penalty([0.0], torch.zeros(1), torch.ones(1)), "logprobs"),
    (lambda: kl_penalty(torch.zeros(1), torch.zeros(1), [1]), "mask"),
    (lambda: sequence_kl([[0.0]], torch.ones(1, 1)), "kl"),
    (lambda: token_gae(torch.ones(1, 2), [[0.0, 0.0]], torch.ones(1, 2)), "values"),
    (lambda: shape_rewards(torch.ones(1, 2), np.zeros((1, 2)), torch.ones(1, 2)), "potentials"),
    (lambda: full_kl(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), [[1, 1]]), "mask"),
])
def test_a_list_where_a_tensor_belongs_is_named(call, name):
    with pytest.raises(TypeError, match=f"^{name} must be a torch.Tensor"):
        call()


# -- 7. -inf logits ----------------------------------------------------------------------------

def test_full_kl_and_entropy_of_a_masked_vocabulary_are_finite():
    inf = float("inf")
    logits = torch.tensor([[[0.0, -inf, 1.0, -inf]]])
    ref_logits = torch.tensor([[[0.5, -inf, 0.0, 2.0]]])
    mask = torch.ones(1, 1)
    kl = full_kl(logits, ref_logits, mask)
    torch.testing.assert_close(kl[0], categorical_kl(logits[0], ref_logits[0]))
    assert torch.isfinite(kl).all()
    # pi_ref never picks a token pi_theta does: the KL is infinite, not NaN
    assert full_kl(ref_logits, logits, mask).item() == inf
    p = torch.softmax(torch.tensor([0.0, 1.0]), -1)
    torch.testing.assert_close(entropy_from_logits(logits)[0, 0], -(p * p.log()).sum())


@pytest.mark.parametrize("shape", [(2, 3, 5), (4, 7, 300), (3, 5, 1000)])
def test_finite_float32_logits_give_the_kl_and_entropy_of_the_plain_formula_bit_for_bit(shape):
    g = torch.Generator().manual_seed(sum(shape))
    for scale in (1.0, 30.0):
        logits, ref_logits = torch.randn(shape, generator=g) * scale, torch.randn(shape, generator=g) * scale
        mask = torch.ones(shape[:-1])
        for temperature in (1.0, 0.7):
            logp = torch.log_softmax(logits / temperature, -1)
            ref_logp = torch.log_softmax(ref_logits / temperature, -1)
            assert torch.equal(full_kl(logits, ref_logits, mask, temperature),
                               (logp.exp() * (logp - ref_logp)).sum(-1))
            assert torch.equal(entropy_from_logits(logits, temperature), -(logp.exp() * logp).sum(-1))


def test_full_kl_keeps_float64():
    g = torch.Generator().manual_seed(0)
    logits, ref_logits = torch.randn(2, 3, 4, generator=g, dtype=torch.float64), torch.randn(
        2, 3, 4, generator=g, dtype=torch.float64)
    kl = full_kl(logits, ref_logits, torch.ones(2, 3))
    assert kl.dtype == torch.float64
    logp, ref_logp = logits.log_softmax(-1), ref_logits.log_softmax(-1)
    torch.testing.assert_close(kl, (logp.exp() * (logp - ref_logp)).sum(-1), rtol=1e-12, atol=1e-15)


# -- 8. shaping ------------------------------------------------------------------------------

def test_text_prefix_potentials_refuse_boolean_scores_as_check_scores_does(tok):
    q, qm = encode_prompts(tok, ["the movie", "a film"], 64, 4)
    gen = generate(eos_prone_lm(tok), q, qm, 4, tok.eos_token_id, tok.pad_token_id, 1.0,
                   torch.Generator().manual_seed(0))
    for scores in (lambda texts: [True] * len(texts), lambda texts: torch.ones(len(texts), dtype=torch.bool)):
        with pytest.raises(TypeError, match="reward_fn returned .*bool"):
            text_prefix_potentials(scores, tok, ["the movie", "a film"], gen)
