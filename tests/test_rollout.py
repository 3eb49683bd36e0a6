"""Rollout collection: gymnasium 1.x autoreset handled so no transition crosses a reset."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from ppo_edu.agents import ActorCritic
from ppo_edu.rollout import RolloutCollector, episode_positions, make_cartpole_envs


def short_limit_envs(num_envs: int = 4, max_episode_steps: int = 12, seed: int = 0):
    """CartPole with a short time limit, so a short rollout sees truncations."""
    envs = gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="sync",
                        max_episode_steps=max_episode_steps,
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    envs.reset(seed=seed)
    return envs


def cartpole_successor(state: np.ndarray, action: int) -> np.ndarray:
    """CartPole's deterministic dynamics, via a scratch env put into ``state``."""
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    env.state = np.asarray(state, dtype=np.float64)
    obs, *_ = env.step(int(action))
    return obs


@pytest.fixture(scope="module")
def collected():
    torch.manual_seed(0)
    envs = short_limit_envs()
    agent = ActorCritic.for_env(envs)
    collector = RolloutCollector(envs, agent, seed=0)
    rollout = collector.collect(40)
    envs.close()
    return agent, rollout


@pytest.mark.parametrize("mode", [gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.DISABLED])
def test_an_autoreset_mode_other_than_same_step_is_refused(mode):
    # DISABLED too: without the check it fails only at the first episode end, as a bare KeyError
    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": mode})
    agent = ActorCritic.for_env(envs)
    with pytest.raises(ValueError, match="SAME_STEP"):
        RolloutCollector(envs, agent)
    envs.close()


def test_the_default_autoreset_mode_is_refused():
    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    with pytest.raises(ValueError, match="autoreset"):
        RolloutCollector(envs, ActorCritic.for_env(envs))
    envs.close()


def test_make_cartpole_envs_uses_same_step_autoreset():
    envs = make_cartpole_envs(3, seed=1)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    assert envs.num_envs == 3
    envs.close()


def test_rollout_shapes_and_dtypes(collected):
    _, rollout = collected
    T, N = 40, 4
    assert rollout.obs.shape == (T, N, 4)
    for name in ("actions", "logprobs", "values", "rewards", "terminated", "truncated",
                 "final_values"):
        assert getattr(rollout, name).shape == (T, N), name
    assert rollout.next_values.shape == (N,)
    assert rollout.terminated.dtype == torch.bool and rollout.truncated.dtype == torch.bool
    assert rollout.rewards.dtype == torch.float32


def test_the_rollout_sees_both_kinds_of_episode_end(collected):
    _, rollout = collected
    assert rollout.truncated.any(), "a 12-step limit over 40 steps must truncate"
    assert rollout.terminated.any(), "a random policy drops the pole within 12 steps somewhere"


def test_no_transition_crosses_a_reset(collected):
    """Within an episode obs[t+1] is CartPole's successor of (obs[t], action[t]); after an
    episode ends, obs[t+1] is a fresh start state, never the successor."""
    _, rollout = collected
    obs, actions = rollout.obs.double().numpy(), rollout.actions.numpy()
    done = (rollout.terminated | rollout.truncated).numpy()
    checked_within = checked_after = 0
    for t in range(rollout.num_steps - 1):
        for i in range(rollout.num_envs):
            successor = cartpole_successor(obs[t, i], actions[t, i])
            if done[t, i]:
                assert np.all(np.abs(obs[t + 1, i]) <= 0.05), "reset state expected after an end"
                assert not np.allclose(obs[t + 1, i], successor, atol=1e-4)
                checked_after += 1
            else:
                np.testing.assert_allclose(obs[t + 1, i], successor, atol=1e-5)
                checked_within += 1
    assert checked_within > 50 and checked_after > 4


def test_final_values_are_the_value_of_the_true_final_observation(collected):
    """The bootstrap for an ended episode is V(info["final_obs"]): the successor of the last
    state, not the next episode's first state (which sits in obs[t + 1])."""
    agent, rollout = collected
    done = rollout.terminated | rollout.truncated
    for t, i in done.nonzero().tolist():
        final_obs = cartpole_successor(rollout.obs[t, i].double().numpy(), rollout.actions[t, i])
        expected = agent.value(torch.as_tensor(final_obs, dtype=torch.float32))
        torch.testing.assert_close(rollout.final_values[t, i], expected, atol=1e-4, rtol=1e-4)
        if t + 1 < rollout.num_steps:
            assert not torch.isclose(rollout.final_values[t, i],
                                     agent.value(rollout.obs[t + 1, i]), atol=1e-6)
    assert (rollout.final_values[~done] == 0).all()


def test_truncation_happens_at_the_time_limit(collected):
    _, rollout = collected
    # a truncation stays a truncation: flagging it terminated as well (CleanRL's
    # done = terminated | truncated) would make the loop below check nothing
    assert (rollout.truncated & ~rollout.terminated).any()
    lengths = torch.zeros(rollout.num_envs, dtype=torch.long)
    for t in range(rollout.num_steps):
        lengths += 1
        trunc = rollout.truncated[t]
        assert (lengths[trunc & ~rollout.terminated[t]] == 12).all()
        lengths[rollout.terminated[t] | trunc] = 0


def test_logprobs_and_values_are_the_agents(collected):
    agent, rollout = collected
    with torch.no_grad():
        dist = agent.distribution(rollout.obs)
        torch.testing.assert_close(rollout.logprobs, dist.log_prob(rollout.actions))
        torch.testing.assert_close(rollout.values, agent.value(rollout.obs))


def test_episode_returns_add_up_the_rewards_of_finished_episodes(collected):
    _, rollout = collected
    # CartPole pays 1 per step, so a finished episode's return is its length
    assert rollout.episode_returns == [float(n) for n in rollout.episode_lengths]
    ends = int((rollout.terminated | rollout.truncated).sum())
    assert len(rollout.episode_returns) == ends


def test_consecutive_rollouts_continue_the_same_episodes():
    torch.manual_seed(0)
    envs = short_limit_envs(num_envs=2, max_episode_steps=500)
    agent = ActorCritic.for_env(envs)
    collector = RolloutCollector(envs, agent, seed=3)
    first = collector.collect(5)
    second = collector.collect(5)
    for i in range(2):
        if not (first.terminated[-1, i] or first.truncated[-1, i]):
            successor = cartpole_successor(first.obs[-1, i].double().numpy(), first.actions[-1, i])
            np.testing.assert_allclose(second.obs[0, i].numpy(), successor, atol=1e-5)
    torch.testing.assert_close(first.next_values, agent.value(second.obs[0]))
    envs.close()


def test_collection_is_reproducible_with_a_seed():
    def run():
        torch.manual_seed(5)
        envs = make_cartpole_envs(3)
        agent = ActorCritic.for_env(envs)
        rollout = RolloutCollector(envs, agent, seed=5).collect(30)
        envs.close()
        return rollout

    a, b = run(), run()
    assert torch.equal(a.obs, b.obs) and torch.equal(a.actions, b.actions)
    assert a.episode_returns == b.episode_returns


def test_continuous_action_spaces_are_refused():
    envs = gym.make_vec("Pendulum-v1", num_envs=2, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    agent = ActorCritic(3, 2)
    with pytest.raises(ValueError, match="Discrete"):
        RolloutCollector(envs, agent)
    envs.close()


class _LeftOnly(ActorCritic):
    """A policy given by an overridden ``logits``: action 0 with probability 1 - 4e-18."""

    def logits(self, obs):
        return torch.tensor([20.0, -20.0]).expand(*obs.shape[:-1], 2)


def test_rollouts_sample_from_an_overridden_logits_method():
    """The collector's fast numpy path copies ActorCritic.act; a subclass that changes the
    policy through ``logits`` must be sampled from that policy, or PPO's ratio compares the
    log-probs of a policy that never acted."""
    agent = _LeftOnly(4, 2)
    obs = torch.randn(64, 4)
    actions, logprobs, _ = agent.act(obs)
    assert (actions == 0).all()
    torch.testing.assert_close(logprobs, agent.evaluate_actions(obs, actions)[0])
    envs = make_cartpole_envs(num_envs=2, seed=0)
    rollout = RolloutCollector(envs, agent, seed=0).collect(16)
    envs.close()
    assert (rollout.actions == 0).all()
    torch.testing.assert_close(rollout.logprobs,
                               agent.evaluate_actions(rollout.obs, rollout.actions)[0])


class _ReluActor(ActorCritic):
    """An agent whose actor has ReLUs where ActorCritic has tanh; its methods are the stock ones."""

    def __init__(self):
        super().__init__(4, 2)
        self.actor[1] = torch.nn.ReLU()
        self.actor[3] = torch.nn.ReLU()
        with torch.no_grad():  # logits large enough that tanh and ReLU give different policies
            self.actor[4].weight.mul_(300.0)


def test_rollouts_sample_from_an_agent_whose_layers_were_changed():
    """The numpy fast path computes Linear-tanh stacks; an actor with other layers (ReLU
    here), or a ``logits`` patched onto the instance, must be run through ``agent.act``,
    or the stored log-probs belong to a policy the agent is not (0.14 nats off for this one)."""
    agent = _ReluActor()
    with pytest.raises(ValueError, match=r"this agent's actor is \[Linear, ReLU, Linear, ReLU, Linear\]"):
        agent.numpy_policy()
    patched = ActorCritic(4, 2)
    patched.logits = lambda obs: torch.tensor([20.0, -20.0]).expand(*obs.shape[:-1], 2)
    for policy in (agent, patched):
        envs = make_cartpole_envs(num_envs=2, seed=0)
        rollout = RolloutCollector(envs, policy, seed=0).collect(32)
        envs.close()
        torch.testing.assert_close(rollout.logprobs,
                                   policy.evaluate_actions(rollout.obs, rollout.actions)[0])
        torch.testing.assert_close(rollout.values, policy.value(rollout.obs))
    assert (rollout.actions == 0).all()


def test_episode_positions_by_hand():
    # env 0: an episode terminated at t = 1, then one still running; env 1: truncated at
    # t = 1, then one that terminates at t = 3, then a new one; env 2: both flags at t = 2
    terminated = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    truncated = torch.tensor([[0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]], dtype=torch.bool)
    since, until = episode_positions(terminated, truncated)
    assert since.T.tolist() == [[0, 1, 0, 1, 2], [0, 1, 0, 1, 0], [0, 1, 2, 0, 1]]
    # termination wins over a truncation on the same step
    assert until.T.tolist() == [[1, 0, -1, -1, -1], [-1, -1, 1, 0, -1], [2, 1, 0, -1, -1]]


def test_episode_positions_agree_with_the_collected_episodes(collected):
    _, rollout = collected
    since, until = episode_positions(rollout.terminated, rollout.truncated)
    ended = rollout.terminated | rollout.truncated
    # the collector's rollout starts at the reset, so an episode that ends at t has length since + 1
    lengths = [int(since[t, i]) + 1 for t in range(rollout.num_steps) for i in range(rollout.num_envs)
               if ended[t, i]]
    assert sorted(lengths) == sorted(rollout.episode_lengths)
    # counting down to each termination, and -1 wherever the episode is cut by the limit instead
    assert (until[rollout.terminated] == 0).all()
    assert (until[rollout.truncated & ~rollout.terminated] == -1).all()
    # a step counts down (>= 1) exactly when its episode goes on and the next step counts down or terminates
    assert ((until[:-1] >= 1) == ((until[1:] >= 0) & ~ended[:-1])).all()


def test_episode_positions_refuse_bad_flags():
    flags = torch.zeros(4, 2, dtype=torch.bool)
    with pytest.raises(TypeError, match="truncated must be a bool tensor"):
        episode_positions(flags, flags.int())
    with pytest.raises(ValueError, match="shape mismatch: truncated"):
        episode_positions(flags, flags[:, :1])
    with pytest.raises(ValueError, match=r"shape \(T, N\)"):
        episode_positions(flags.reshape(-1), flags.reshape(-1))
