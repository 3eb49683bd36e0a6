"""Bad input to the CartPole side and the exercise checkers: each case here used to run on
silently (a wrong or coerced result) or to fail deep inside torch, numpy or gymnasium with an
error that named no argument."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ppo_edu.agents import ActorCritic

# --------------------------------------------------------------------------- silently wrong results


def test_evaluate_actions_refuses_actions_that_do_not_match_the_observations():
    agent, obs = ActorCritic(4, 2), torch.randn(3, 4)
    # obs indexed, actions not (or the other way round): gather() returned the first 2 (or 1)
    # log-probs, each paired with another observation's action, and no error
    for actions in (torch.tensor([0, 1]), torch.tensor([1]), torch.tensor([[0], [1], [1]])):
        with pytest.raises(ValueError, match=r"actions must have shape \(3,\), one per observation"):
            agent.evaluate_actions(obs, actions)
    for actions in (torch.tensor([0, 2, 1]), torch.tensor([0, -1, 1])):  # torch's "index 2 is out of bounds"
        with pytest.raises(ValueError, match=r"actions must be in \[0, 2\) \(this agent has 2 actions\)"):
            agent.evaluate_actions(obs, actions)
    with pytest.raises(TypeError, match="actions must be a torch.Tensor of action indices, got ndarray"):
        agent.evaluate_actions(obs, np.array([0, 1, 1]))
    logprobs, _, _ = agent.evaluate_actions(obs.reshape(3, 1, 4), torch.tensor([[0], [1], [1]]))  # (T, N)
    torch.testing.assert_close(logprobs.reshape(3), agent.evaluate_actions(obs, torch.tensor([0, 1, 1]))[0])


def test_surrogate_epochs_refuses_an_epsilon_that_makes_the_clip_fraction_meaningless():
    from ppo_edu.experiments import (
        collect_batch,
        cpi_objective,
        surrogate_epochs,
        surrogate_seed_sweep,
    )

    torch.manual_seed(0)
    agent = ActorCritic(4, 2)
    batch = collect_batch(agent, num_envs=2, num_steps=8, seed=1)
    for epsilon in (-0.2, 0, True, "0.2"):  # -0.2 recorded a clip fraction of 1.0 at every epoch
        with pytest.raises(ValueError, match="epsilon must be a number > 0"):
            surrogate_epochs(agent, batch, cpi_objective, epochs=1, epsilon=epsilon, progress=False)
        with pytest.raises(ValueError, match="epsilon must be a number > 0"):  # before any pretraining
            surrogate_seed_sweep({"cpi": cpi_objective}, [0], epsilon=epsilon, progress=False)
    for name, bad in (("epochs", True), ("epochs", 2.5), ("epochs", "3"), ("minibatch_size", 2.5)):
        # True ran one epoch; the others failed inside range(), split() or a comparison
        with pytest.raises(ValueError, match=f"{name} must be an integer >= 1, got {bad!r}"):
            surrogate_epochs(agent, batch, cpi_objective, progress=False, **{name: bad})
    with pytest.raises(ValueError, match="eval_every must be an integer >= 1, got 1.5"):
        surrogate_epochs(agent, batch, cpi_objective, epochs=2, eval_every=1.5, progress=False)


@pytest.mark.parametrize("iterations", [0, -3, 2.5, True])
def test_training_helpers_refuse_counts_that_train_nothing(iterations):
    from ppo_edu.advantages import fit_critic
    from ppo_edu.experiments import train_vanilla_pg

    # 0 and -3 returned [] and left the agent as it was, as if it had been trained
    with pytest.raises(ValueError, match=f"iterations must be an integer >= 1, got {iterations!r}"):
        train_vanilla_pg(ActorCritic(4, 2), iterations=iterations, num_steps=8, progress=False)
    with pytest.raises(ValueError, match=f"iterations must be an integer >= 1, got {iterations!r}"):
        fit_critic(ActorCritic(4, 2), iterations=iterations, num_envs=1, num_steps=8)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):  # no regression at all
        fit_critic(ActorCritic(4, 2), iterations=1, epochs=0, num_envs=1, num_steps=8)


def test_continuations_refuse_float_and_out_of_range_first_actions():
    from ppo_edu.advantages import continuations

    agent, obs = ActorCritic(4, 2), torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"first_actions must be CartPole actions, integers 0 or 1, got \[0.7, 1.2\]"):
        continuations(agent, obs, [0.7, 1.2], horizon=3)  # played as actions 0 and 1
    with pytest.raises(ValueError, match="first_actions must be CartPole actions"):
        continuations(agent, obs, [0, 2], horizon=3)  # gymnasium's "array([0, 2]) invalid"
    with pytest.raises(ValueError, match=r"first_actions must have shape \(B,\) = \(2,\)"):
        continuations(agent, obs, [0], horizon=3)
    with pytest.raises(ValueError, match=r"obs must have shape \(B, 4\).* got \(4,\)"):
        continuations(agent, torch.zeros(4), [0], horizon=3)
    with pytest.raises(ValueError, match="horizon must be an integer >= 1, got 0"):
        continuations(agent, obs, [0, 1], horizon=0)  # returned empty (0, B) tensors
    assert continuations(agent, obs, torch.tensor([0, 1]), horizon=3)["rewards"].shape[1] == 2


def test_lambda_sweep_takes_whole_numbers_written_as_floats():
    from ppo_edu.advantages import lambda_sweep

    # passed its own check, then failed inside repeat_interleave()
    records = lambda_sweep(ActorCritic(4, 2), torch.zeros(1, 4), [0], [0.5], n_estimates=2.0,
                           n_truth=2.0, horizon=5.0)
    assert [r["lam"] for r in records] == [0.5]


def test_record_episode_checks_its_agent_and_settings_as_evaluate_does():
    from ppo_edu.animation import record_episode

    with pytest.raises(ValueError, match="chooses among 3 actions but the env has 2"):
        record_episode(ActorCritic(4, 3), max_steps=3)  # played on until it picked action 2
    with pytest.raises(ValueError, match="deterministic must be True or False, got 'False'"):
        record_episode(ActorCritic(4, 2), max_steps=3, deterministic="False")  # played deterministically
    with pytest.raises(ValueError, match="frame_every must be an integer >= 1, got 1.5"):
        record_episode(ActorCritic(4, 2), max_steps=6, frame_every=1.5)  # kept every third frame
    with pytest.raises(ValueError, match="max_steps must be an integer >= 1, got 2.5"):
        record_episode(ActorCritic(4, 2), max_steps=2.5)  # played 3 steps
    for seed in (1.5, -1):  # failed inside torch / gymnasium
        with pytest.raises(ValueError, match="seed must be an integer >= 0"):
            record_episode(ActorCritic(4, 2), max_steps=3, seed=seed)
    assert record_episode(ActorCritic(4, 2), max_steps=3, frame_every=np.int64(1)).length == 3


def test_explained_variance_and_the_value_loss_refuse_nan_and_empty_input():
    from ppo_edu.ppo import clipped_value_loss, explained_variance

    y = torch.tensor([1.0, 2.0, 3.0])
    # NaN came back as NaN, which this function's own docstring reads as "targets do not vary"
    with pytest.raises(ValueError, match=r"predictions contains NaN or inf \(first at index \(1,\)"):
        explained_variance(torch.tensor([1.0, float("nan"), 3.0]), y)
    with pytest.raises(ValueError, match="targets is empty"):
        explained_variance(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="values is empty"):  # the mean of nothing: NaN
        clipped_value_loss(torch.zeros(0), torch.zeros(0), torch.zeros(0))
    with pytest.raises(TypeError, match="values must be a torch.Tensor, got ndarray"):  # inside torch.clamp
        clipped_value_loss(np.ones(3), np.ones(3), np.zeros(3))
    assert math.isnan(explained_variance(y, torch.ones(3)))  # constant targets: still NaN, as documented


def test_categorical_kl_of_a_masked_action_is_finite():
    from ppo_edu.objectives import categorical_kl

    old = torch.tensor([[0.0, float("-inf")], [0.0, 0.0]])  # pi_old never takes action 1 in state 0
    new = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    kl = categorical_kl(old, new)  # was NaN: 0 * (-inf - log 0.5)
    torch.testing.assert_close(kl, torch.tensor([math.log(2.0), 0.0]))
    assert categorical_kl(new, old)[0].item() == math.inf  # pi puts mass where pi_old has none
    with pytest.raises(TypeError, match="old_logits must be a floating-point tensor, got torch.int64"):
        categorical_kl(torch.tensor([[0, 1]]), torch.tensor([[1, 0]]))
    with pytest.raises(ValueError, match=r"logits contains NaN \(first at index \(0, 1\)\)"):
        categorical_kl(torch.zeros(1, 2), torch.tensor([[0.0, float("nan")]]))


# --------------------------------------------------------------------------- errors that named nothing


def test_train_ppo_names_what_a_learners_advantage_fn_returned():
    from ppo_edu.advantages import compute_gae
    from ppo_edu.ppo import PPOConfig, train_ppo

    tiny = PPOConfig(num_envs=2, num_steps=16, total_timesteps=32, minibatch_size=16, update_epochs=1)

    def advantages_only(*args, gamma, lam):
        return compute_gae(*args, gamma=gamma, lam=lam)[0]

    def as_numpy(*args, gamma, lam):
        return tuple(x.numpy() for x in compute_gae(*args, gamma=gamma, lam=lam))

    def as_integers(*args, gamma, lam):
        return tuple(x.round().long() for x in compute_gae(*args, gamma=gamma, lam=lam))

    cases = [  # were: too many values to unpack / no attribute 'detach' / mean(): could not infer
        (advantages_only, r"advantage_fn must return a pair \(advantages, returns\), got a tensor of shape \(16, 2\)"),
        (lambda *a, **k: None, r"advantage_fn must return a pair \(advantages, returns\), got NoneType"),
        (as_numpy, "advantage_fn returned advantages as ndarray; it must be a floating-point torch.Tensor"),
        (as_integers, "advantage_fn returned advantages as torch.int64"),
    ]
    for fn, message in cases:
        with pytest.raises(TypeError, match=message):
            train_ppo(tiny, fn, progress=False)


def test_bootstrap_values_names_numpy_input():
    from ppo_edu.advantages import bootstrap_values

    z = torch.zeros(2, 1)
    with pytest.raises(TypeError, match="values must be a torch.Tensor, got ndarray"):  # was "no attribute 'dim'"
        bootstrap_values(np.zeros((2, 1)), z.bool(), z.bool(), z, torch.zeros(1))


def test_plots_name_a_train_result_or_a_lone_history():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ppo_edu.plots import plot_history, plot_runs
    from ppo_edu.ppo import TrainResult

    history = [{"env_steps": 1, "episode_return": 1.0}, {"env_steps": 2, "episode_return": 2.0}]
    try:
        # was "'ActorCritic' object has no attribute 'keys'"
        with pytest.raises(TypeError, match=r"train_ppo's result.history\), got a TrainResult holding a ActorCritic"):
            plot_history(TrainResult(ActorCritic(4, 2), history), keys=["episode_return"])
        with pytest.raises(TypeError, match="the history must be a list of dicts, one per update, got dict"):
            plot_history({"episode_return": [1.0, 2.0]}, keys=["episode_return"])
        with pytest.raises(TypeError, match="group 'ppo' holds one history .* wrap it in a list"):
            plot_runs({"ppo": history})  # was "'str' object has no attribute 'keys'"
        plot_runs({"ppo": [history, history]})
    finally:
        plt.close("all")


def test_token_gae_checker_names_nan_advantages_instead_of_blaming_the_padding():
    from ppo_edu.exercises.lesson6 import check_token_gae
    from ppo_edu.rlhf.advantages import token_gae

    def nan_at_the_start(rewards, values, mask, gamma, lam):
        advantages, returns = token_gae(rewards, values, mask, gamma, lam)
        advantages = advantages.clone()
        advantages[0, 0] = float("nan")  # a 0/0 in the learner's recursion, say
        return advantages, returns

    hint = check_token_gae.verify(nan_at_the_start)
    # was: "your advantages on real tokens change with the values the padding holds"
    assert hint is not None and "your advantages on a real token is nan at index (0, 0)" in hint
    assert "padding" not in hint
