"""Bad input to the CartPole agent and trainer and to the lesson-5 LM helpers: each case here
used to fail deep inside torch, VADER or gymnasium naming nothing, to run on with a wrong
result, or (text_nll, generate) to leave a training model in eval mode."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from ppo_edu import advantages as advantages_module
from ppo_edu import ppo as ppo_module
from ppo_edu.advantages import compute_gae, continuations, discounted_returns, fit_critic, lambda_sweep
from ppo_edu.agents import ActorCritic
from ppo_edu.ppo import PPOConfig, train_ppo

# --------------------------------------------------------------------------- the agent's obs


@pytest.fixture
def agent():
    torch.manual_seed(0)
    return ActorCritic(4, 2)


ENTRY_POINTS = {
    "logits": lambda agent, obs: agent.logits(obs),
    "value": lambda agent, obs: agent.value(obs),
    "act": lambda agent, obs: agent.act(obs),
    "distribution": lambda agent, obs: agent.distribution(obs),
    "evaluate_actions": lambda agent, obs: agent.evaluate_actions(obs, torch.zeros(2, dtype=torch.long)),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.int64, torch.float16])
def test_obs_of_another_dtype_names_both_dtypes(agent, entry, dtype):
    # was torch's "mat1 and mat2 must have the same dtype, but got Double and Float"
    obs = torch.zeros(2, 4, dtype=dtype)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(TypeError, match=rf"obs is {name}; the network is float32: use "
                                        r"torch.as_tensor\(obs, dtype=torch.float32\)"):
        ENTRY_POINTS[entry](agent, obs)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_obs_that_is_not_a_tensor_is_named(agent, entry):
    # was "linear(): argument 'input' (position 1) must be Tensor, not numpy.ndarray"
    with pytest.raises(TypeError, match="obs must be a torch.Tensor, got ndarray"):
        ENTRY_POINTS[entry](agent, np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="obs must be a torch.Tensor, got list"):
        ENTRY_POINTS[entry](agent, [[0.0] * 4] * 2)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_obs_is_refused(agent, entry, bad):
    # NaN gave action 0 with a NaN log-prob, silently
    obs = torch.zeros(2, 4)
    obs[1, 2] = bad
    with pytest.raises(ValueError, match=r"obs contains NaN or inf \(first at index \(1, 2\)"):
        ENTRY_POINTS[entry](agent, obs)


def test_large_finite_obs_whose_sum_overflows_is_not_refused(agent):
    obs = torch.full((2, 4), 3e38)  # finite entries; their float32 sum is inf
    assert agent.logits(obs).shape == (2, 2)


def test_a_0d_obs_is_named(agent):
    with pytest.raises(ValueError, match="obs has no dimensions"):
        agent.value(torch.tensor(1.0))


def test_a_float64_agent_takes_float64_obs_and_refuses_float32(agent):
    agent = agent.double()
    assert agent.act(torch.zeros(3, 4, dtype=torch.float64))[0].shape == (3,)
    with pytest.raises(TypeError, match=r"obs is float32; the network is float64: use "
                                        r"torch.as_tensor\(obs, dtype=torch.float64\)"):
        agent.value(torch.zeros(3, 4))


@pytest.mark.parametrize("bad", ["False", "True", 0, 1, None])
def test_act_deterministic_must_be_a_bool(agent, bad):
    # "False" (a string) is true: it quietly took the argmax
    with pytest.raises(ValueError, match="deterministic must be True or False"):
        agent.act(torch.zeros(1, 4), deterministic=bad)
    with pytest.raises(ValueError, match="deterministic must be True or False"):
        agent.numpy_policy().act(np.zeros((1, 4), dtype=np.float32), deterministic=bad)
    assert agent.act(torch.zeros(1, 4), deterministic=np.bool_(True))[0].shape == (1,)


# --------------------------------------------------------------------------- train_ppo


def _no_envs(monkeypatch):
    def make_envs(config):
        raise AssertionError("train_ppo built its envs before checking advantage_fn")

    monkeypatch.setattr(ppo_module, "make_envs", make_envs)


def test_train_ppo_refuses_an_advantage_fn_with_another_signature_before_building_envs(monkeypatch):
    _no_envs(monkeypatch)
    # was "discounted_returns() got multiple values for argument 'gamma'", after a rollout
    with pytest.raises(TypeError, match=r"(?s)advantage_fn discounted_returns\(.*cannot be called as "
                                        r"train_ppo calls it.*multiple values for argument 'gamma'"):
        train_ppo(PPOConfig(total_timesteps=256), advantage_fn=discounted_returns, progress=False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'lam'"):
        train_ppo(PPOConfig(total_timesteps=256), progress=False,
                  advantage_fn=lambda r, v, te, tr, f, n, gamma: None)


@pytest.mark.parametrize("bad", [5, "compute_gae", None])
def test_train_ppo_refuses_an_advantage_fn_that_is_not_callable(monkeypatch, bad):
    _no_envs(monkeypatch)
    with pytest.raises(TypeError, match="advantage_fn must be a function like"):
        train_ppo(PPOConfig(total_timesteps=256), advantage_fn=bad, progress=False)


def test_train_ppo_takes_advantage_fns_that_bind_as_it_calls_them():
    calls = []

    def gae(*args, **kwargs):
        calls.append(sorted(kwargs))
        return compute_gae(*args, **kwargs)

    for fn in (functools.partial(compute_gae), gae):
        assert len(train_ppo(PPOConfig(total_timesteps=256), advantage_fn=fn, progress=False).history) == 1
    assert calls == [["gamma", "lam"]]


# --------------------------------------------------------------------------- lesson 3's experiment


def _no_gym(monkeypatch):
    import gymnasium

    def make_vec(*args, **kwargs):
        raise AssertionError("an env was built before the seed was checked")

    monkeypatch.setattr(gymnasium, "make_vec", make_vec)


@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, "0", True])
def test_continuations_checks_its_seed_before_building_envs(agent, monkeypatch, bad):
    # -1 was gymnasium's "Seed must be greater or equal to zero", 2**64 an overflow in torch
    _no_gym(monkeypatch)
    with pytest.raises(ValueError, match="seed must be an integer >= 0 and < 2\\*\\*64"):
        continuations(agent, torch.zeros(2, 4), [0, 1], horizon=3, seed=bad)


@pytest.mark.parametrize("kwargs,match", [
    (dict(gamma="0.9"), r"gamma must be a real number in \(0, 1\], got '0.9'"),
    (dict(gamma=True), r"gamma must be a real number"),
    (dict(gamma=float("nan")), r"gamma must be in \(0, 1\]"),
    (dict(lambdas=["0.5"]), r"lambdas\[0\] must be a real number in \[0, 1\], got '0.5'"),
    (dict(lambdas=[0.5, True]), r"lambdas\[1\] must be a real number"),
    (dict(lambdas=0.5), r"lambdas must be a list of numbers"),
    (dict(seed=-1), r"seed must be an integer >= 0"),
    (dict(seed=2**64), r"seed must be an integer >= 0"),
])
def test_lambda_sweep_checks_gamma_lambdas_and_seed_before_playing(agent, monkeypatch, kwargs, match):
    _no_gym(monkeypatch)
    args = dict(lambdas=[0.5], n_estimates=2, n_truth=2, horizon=3) | kwargs
    with pytest.raises(ValueError, match=match):
        lambda_sweep(agent, torch.zeros(1, 4), [0], **args)


def test_lambda_sweep_still_takes_numpy_and_tensor_lambdas(agent):
    plain = lambda_sweep(agent, torch.zeros(1, 4), [0], [0.5, 1.0], n_estimates=2, n_truth=2, horizon=3)
    for lambdas in (np.array([0.5, 1.0]), torch.tensor([0.5, 1.0]), (0.5, 1)):
        assert lambda_sweep(agent, torch.zeros(1, 4), [0], lambdas, n_estimates=2, n_truth=2,
                            horizon=3) == plain


def test_fit_critic_checks_its_seed_before_seeding_torch(agent, monkeypatch):
    monkeypatch.setattr(advantages_module.torch, "manual_seed",
                        lambda seed: pytest.fail("torch was seeded with an unchecked seed"))
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        fit_critic(agent, iterations=1, num_envs=1, num_steps=8, seed=2**64)


# --------------------------------------------------------------------------- lessons 5-6


@pytest.fixture(scope="module")
def tiny_lm():
    from ppo_edu.lm import load_lm

    return load_lm("tiny")


@pytest.mark.parametrize("texts,index,kind", [([None], 0, "NoneType"), (["fine", 5], 1, "int"),
                                              (["ok", [464, 318]], 1, "list")])
def test_vader_compound_names_an_element_that_is_not_a_string(texts, index, kind):
    from ppo_edu.lm.reward import vader_compound

    # was "'NoneType' object is not iterable" from inside VADER
    with pytest.raises(TypeError, match=rf"texts\[{index}\] is of type {kind}, not a string"):
        vader_compound(texts)


def test_vader_compound_still_scores_empty_strings_and_generators():
    from ppo_edu.lm.reward import vader_compound

    scores = vader_compound(["", "What a great film!"])
    assert scores[0] == 0.0 and scores[1] > 0.5
    assert np.array_equal(vader_compound(t for t in ["", "What a great film!"]), scores)


@pytest.mark.parametrize("chosen,rejected,name,kind", [
    (np.zeros(3), torch.zeros(3), "r_chosen", "ndarray"),
    (torch.zeros(3), [0.0, 1.0, 2.0], "r_rejected", "list"),
])
def test_bradley_terry_loss_names_an_argument_that_is_not_a_tensor(chosen, rejected, name, kind):
    from ppo_edu.lm.bradley_terry import bradley_terry_loss

    # was "'numpy.ndarray' object has no attribute 'numel'"
    with pytest.raises(TypeError, match=f"{name} must be a torch.Tensor, got {kind}"):
        bradley_terry_loss(chosen, rejected)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "512", True])
def test_sentiment_reward_fn_checks_max_length_before_loading(bad):
    from ppo_edu.lm.reward import sentiment_reward_fn

    # 0 failed at the first scoring with a reshape error, -1 with OverflowError; the directory
    # does not exist: the check comes before any loading
    with pytest.raises(ValueError, match="max_length must be an integer >= 1"):
        sentiment_reward_fn("/no/such/classifier", max_length=bad)


def test_resolve_says_a_file_is_not_a_model_directory():
    from ppo_edu.lm.models import TINY_LM_DIR, load_lm, resolve

    weights = TINY_LM_DIR / "model.safetensors"
    # was "model directory '.../model.safetensors' does not exist", which is false
    for name in (str(weights), weights):
        with pytest.raises(NotADirectoryError, match=r"is a file, not a model directory: pass the folder "
                                                     r"that holds config.json"):
            resolve(name, None)
    with pytest.raises(NotADirectoryError, match=str(TINY_LM_DIR)):
        load_lm(weights)


def test_perplexity_of_a_text_too_long_leaves_a_training_model_training(tiny_lm):
    from ppo_edu.lm.training import perplexity

    model, tokenizer = tiny_lm
    model.train()
    try:
        with pytest.raises(ValueError, match=r"texts\[1\] is \d+ tokens \(with EOS twice\), more than "
                                             r"the model's context of 128"):
            perplexity(model, tokenizer, ["a fine film .", "word " * 2000])
        assert model.training  # was left in eval mode
        model.eval()
        assert perplexity(model, tokenizer, ["a fine film ."]) > 1 and not model.training
    finally:
        model.eval()


def test_generate_restores_the_training_mode_when_sampling_raises(tiny_lm, monkeypatch):
    from ppo_edu.lm.training import generate

    model, tokenizer = tiny_lm

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    model.train()
    try:
        monkeypatch.setattr(model, "generate", broken)
        with pytest.raises(RuntimeError, match="out of memory"):
            generate(model, tokenizer, ["A"], max_new_tokens=2)
        assert model.training
    finally:
        model.eval()


def test_text_nll_and_generate_leave_an_eval_model_in_eval_mode(tiny_lm):
    from ppo_edu.lm.training import generate, text_nll

    model, tokenizer = tiny_lm
    model.eval()
    total, count = text_nll(model, tokenizer, ["a fine film ."])
    assert total > 0 and count > 0 and not model.training
    assert len(generate(model, tokenizer, ["A"], max_new_tokens=2)) == 1 and not model.training


@pytest.mark.parametrize("loss_fn,error,match", [
    (lambda c, r: torch.nn.functional.softplus(r - c), ValueError,
     r"loss_fn <lambda> returned a tensor of shape \(\d+,\); it must return a 0-d tensor"),
    (lambda c, r: torch.nn.functional.softplus(r - c).mean().detach(), ValueError,
     r"loss_fn <lambda> returned a loss without a gradient"),
    (lambda c, r: torch.nn.functional.softplus(r - c).mean().item(), TypeError,
     r"loss_fn <lambda> returned a float; it must return a 0-d torch.Tensor"),
    (3, TypeError, r"loss_fn must be a function"),
])
def test_train_reward_model_names_a_loss_fn_that_does_not_return_a_scalar_loss(loss_fn, error, match):
    from ppo_edu.lm.models import load_reward_model
    from ppo_edu.lm.training import train_reward_model

    model, tokenizer = load_reward_model("tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # a (P,) loss was "Boolean value of Tensor with more than one value is ambiguous"
    with pytest.raises(error, match=match):
        train_reward_model(model, tokenizer, ["great film .", "awful film .", "fine .", "bad ."],
                           [3.0, -3.0, 1.0, -2.0], batch_size=4, progress=False, loss_fn=loss_fn)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # no step taken


def test_load_reviews_refuses_more_examples_than_the_split_holds():
    from ppo_edu.lm.data import load_reviews, load_snippets

    # 5000 of the 1,061 test snippets returned all 1,061, silently
    with pytest.raises(ValueError, match=r"max_examples=5000 but the snippets 'test' split has only "
                                         r"1061 items"):
        load_reviews("snippets", "test", max_examples=5000)
    texts, labels = load_reviews("snippets", "test", max_examples=1061)  # all of it, stored order
    ref_texts, ref_labels = load_snippets("test")
    assert texts == ref_texts and np.array_equal(labels, ref_labels)


def test_load_reviews_refuses_more_imdb_examples_than_the_split_holds(monkeypatch):
    import sys
    import types

    from ppo_edu.lm.data import load_reviews
    from ppo_edu.lm.testing import StandInSplit

    rows = StandInSplit([{"text": "Great.", "label": 1}, {"text": "Awful.", "label": 0}])
    monkeypatch.setitem(sys.modules, "datasets",
                        types.SimpleNamespace(load_dataset=lambda name, split: rows))
    with pytest.raises(ValueError, match=r"max_examples=3 but the imdb 'test' split has only 2 items"):
        load_reviews("imdb", "test", max_examples=3)
    assert load_reviews("imdb", "test", max_examples=2)[0] == ["Great.", "Awful."]
